"""Verbatim output samples from the spec (../shared/spec/xm-reference.md)."""

# §2.5: `xm create -n -f xmexample1` (without the "Using config file" line)
SPEC_XMEXAMPLE1 = """\
(vm
    (name ExampleDomain)
    (memory 64)
    (vcpus 1)
    (on_xend_start ignore)
    (on_xend_stop ignore)
    (image
        (linux
            (kernel /boot/vmlinuz-2.6.10-xenU)
            (root '/dev/hda1 ro')
            (videoram 4)
            (args 4)
        )
    )
    (s3_integrity 1)
    (device (vbd (uname phy:hda1) (dev hda1) (mode w)))
    (device (vif))
)"""
