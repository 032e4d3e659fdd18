# dom0: everything a fresh Debian 12 machine needs, as root.
#   make demo   set up, start xend, boot the example guest, show `xm list` and its console
#   make test   set up, then run the whole test suite
#   make bench  set up, then run the benchmarks (ratios against raw QEMU and virsh)
#   make fuzz   set up, then a bounded fuzz campaign of every parser of outside input
SHELL := /bin/bash
PY ?= /usr/bin/python3
VENV := .venv
BIN := $(VENV)/bin
GUEST := build/guest
STAMP := build/stamps
APT_PACKAGES := qemu-system-x86 qemu-utils busybox-static cpio e2fsprogs xz-utils \
	linux-source-6.1 make gcc libc6-dev flex bison bc libelf-dev libssl-dev iperf3 hping3 \
	iproute2 socat python3-venv procps file dnsmasq-base iptables qemu-block-extra tgt \
	nfs-ganesha nfs-ganesha-vfs iputils-ping nftables swtpm swtpm-tools \
	novnc libjs-xterm node-xterm chromium ovmf
BENCH_APT_PACKAGES := libvirt-daemon-system libvirt-clients
GUEST_IMAGE_DIR := /var/lib/dom0/guest

.PHONY: setup guest demo test unit functional lint bench clean install-guest fuzz

setup: $(STAMP)/apt $(STAMP)/venv

$(STAMP)/apt:
	@mkdir -p $(STAMP)
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing: $$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			--no-install-recommends $$missing; \
	fi
	@touch $@

$(STAMP)/venv: pyproject.toml $(STAMP)/apt
	@mkdir -p $(STAMP)
	@[ -x $(BIN)/python ] || $(PY) -m venv $(VENV)
	@$(BIN)/pip install -q -e '.[test]'
	@# pip's console-script wrappers import re (~5 ms of every `xm list`): use lean ones
	@for cmd in xm:dom0.cli.main xend:dom0.daemon.main xendomains:dom0.xendomains; do \
		printf '#!%s\nimport sys\nfrom %s import main\nsys.exit(main())\n' \
			"$(CURDIR)/$(BIN)/python3" "$${cmd#*:}" > $(BIN)/$${cmd%%:*}; \
		chmod +x $(BIN)/$${cmd%%:*}; done
	@touch $@

guest: $(STAMP)/apt
	@bash guest/build.sh $(GUEST)
	@bash guest/build-hvm.sh $(GUEST)

# The example configs name the image where a system would keep it (like /boot/vmlinuz-xenU).
install-guest: guest
	@mkdir -p $(GUEST_IMAGE_DIR)
	@for f in vmlinuz initrd.img rootfs.ext4; do \
		cmp -s $(GUEST)/$$f $(GUEST_IMAGE_DIR)/$$f || cp $(GUEST)/$$f $(GUEST_IMAGE_DIR)/$$f; done

demo: setup install-guest
	@mkdir -p /etc/xen/scripts
	@for f in scripts/xen/*; do [ -e /etc/xen/scripts/$$(basename $$f) ] || cp $$f /etc/xen/scripts/; done
	@bash scripts/demo.sh

lint: setup
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

unit: setup
	$(BIN)/pytest -q tests/unit

test: setup guest
	DOM0_GUEST_DIR=$(CURDIR)/$(GUEST) $(BIN)/pytest -q -rs tests

# The property tests of tests/unit/test_properties_*.py with FUZZ_EXAMPLES inputs per
# target (make test runs them with a few hundred).  FUZZ_SEED fixes hypothesis's seed
# (random unless given, and printed, so that a campaign can be rerun).
FUZZ_EXAMPLES ?= 100000
ifndef FUZZ_SEED
FUZZ_SEED := $(shell od -An -N4 -tu4 /dev/urandom | tr -d ' ')
endif
fuzz: setup
	@echo "fuzz: $(FUZZ_EXAMPLES) inputs per target, seed $(FUZZ_SEED)"
	DOM0_FUZZ=1 DOM0_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/pytest -q -p no:cacheprovider \
		--hypothesis-seed=$(FUZZ_SEED) tests/unit/test_properties_*.py

$(STAMP)/bench-apt:
	@mkdir -p $(STAMP)
	@missing=$$(for p in $(BENCH_APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			--no-install-recommends $$missing; \
	fi
	@touch $@

bench: setup guest $(STAMP)/bench-apt
	DOM0_GUEST_DIR=$(CURDIR)/$(GUEST) $(BIN)/python bench/bench_core.py
	DOM0_GUEST_DIR=$(CURDIR)/$(GUEST) $(BIN)/python bench/bench_resources.py
	DOM0_GUEST_DIR=$(CURDIR)/$(GUEST) $(BIN)/python bench/bench_devices.py
	DOM0_GUEST_DIR=$(CURDIR)/$(GUEST) $(BIN)/python bench/bench_migration.py
	DOM0_GUEST_DIR=$(CURDIR)/$(GUEST) $(BIN)/python bench/bench_web.py
	DOM0_GUEST_DIR=$(CURDIR)/$(GUEST) $(BIN)/python bench/bench_sched.py
	DOM0_GUEST_DIR=$(CURDIR)/$(GUEST) $(BIN)/python bench/bench_top.py
	DOM0_GUEST_DIR=$(CURDIR)/$(GUEST) $(BIN)/python bench/bench_hvm.py
	DOM0_GUEST_DIR=$(CURDIR)/$(GUEST) $(BIN)/python bench/bench_acm.py

clean:
	rm -rf build $(VENV)
