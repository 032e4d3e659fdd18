"""xm's command registry: every subcommand declared once, in order, with its options
(cli.opts.Option: help and parser both derive from them), the deprecated aliases, and
the help texts derived from the declarations (spec §1.1).  Imported by the dispatcher
(cli.main) and by commands that parse their options; it imports no command."""

from __future__ import annotations

from dom0.cli.opts import Option

USAGE_HEAD = "Usage: xm <subcommand> [args]\n\nControl, list, and manipulate Xen guest instances.\n"
USAGE_FOOT = ("<Domain> can either be the Domain Name or Id.\n"
              "For more help on 'xm' see the xm(1) man page.\n"
              "For more help on 'xm create' see the xmdomain.cfg(5)  man page.\n")


class Command:
    """One xm subcommand: its help text, its options, and whether short help lists it.
    (A plain class: dataclasses cost xm's start several milliseconds.)"""

    __slots__ = ("name", "synopsis", "description", "options", "common")

    def __init__(self, name: str, synopsis: str, description: str,
                 options: list[Option] | None = None, common: bool = False) -> None:
        self.name = name
        self.synopsis = synopsis
        self.description = description
        self.options = options or []
        self.common = common

    def help_rows(self) -> list[tuple[str, str]]:
        return [(o.label(), o.help) for o in self.options if o.help is not None]


def _paused(help: str) -> Option:
    return Option("p", "paused", help)


#: xm create's and xm new's options (cli.configfile parses with them)
CREATE_OPTIONS = [
    Option("h", "help", "Print this help."),
    Option("", "help_config", "Print the available configuration variables."),
    Option("q", "quiet", "Quiet."),
    Option("", "path", "Search path for configuration scripts.", value="PATH"),
    Option("f", "defconfig", "Use the given Python configuration script.", value="FILE"),
    Option("F", "config", "Domain configuration to use (SXP).", value="FILE"),
    Option("n", "dryrun", "Dry run - prints the resulting configuration in SXP."),
    _paused("Leave the domain paused after it is created."),
    Option("c", "console_autoconnect", "Connect to the console after the domain is created."),
    # accepted as xm 3.4 did, refused or ignored; never listed
    Option("x", "xmldryrun", None),
    Option("s", "skipdtd", None),
    Option("", "vncviewer", None),
    Option("", "vncviewer-autopass", None),
]

_LONG = Option("l", "long", "List in long format")

COMMANDS: list[Command] = [
    Command("console", "[-q|--quiet] <Domain>", "Attach to <Domain>'s console.",
            [Option("q", "quiet", "Do not print an error message if the domain does not exist.")],
            common=True),
    Command("vncviewer", "[--[vncviewer-]autopass] <Domain>",
            "Attach to <Domain>'s VNC server.",
            [Option("", "autopass", "Pass VNC password to viewer"),
             Option("", "vncviewer-autopass", None), Option("h", "help", None)]),
    Command("create", "<ConfigFile> [options] [vars]", "Create a domain based on <ConfigFile>.",
            CREATE_OPTIONS, common=True),
    Command("new", "<ConfigFile> [options] [vars]", "Adds a domain to Xend domain management",
            CREATE_OPTIONS, common=True),
    Command("delete", "<DomainName>", "Remove a domain from Xend domain management.",
            common=True),
    Command("start", "<DomainName>", "Start a Xend managed domain",
            [_paused("Do not unpause domain after starting it"),
             Option("c", "console_autoconnect",
                    "Connect to the console after the domain is created"),
             Option("", "vncviewer", None), Option("", "vncviewer-autopass", None)],
            common=True),
    Command("destroy", "<Domain>", "Terminate a domain immediately.", common=True),
    Command("domid", "<DomainName>", "Convert a domain name to domain id."),
    Command("domname", "<DomId>", "Convert a domain id to domain name."),
    Command("dump-core", "[-L|--live] [-C|--crash] [-R|--reset] <Domain> [Filename]",
            "Dump core for a specific domain.",
            [Option("L", "live", "Dump core without pausing the domain"),
             Option("C", "crash", "Crash domain after dumping core"),
             Option("R", "reset", "Reset domain after dumping core")]),
    Command("list", "[options] [Domain, ...]", "List information about all/some domains.",
            [Option("l", "long", "Output all VM details in SXP"),
             Option("", "label", "Include security labels"),
             Option("", "state", "Select only VMs with the specified state", value="<state>"),
             Option("v", "vcpus", None)],  # deprecated: xm vcpu-list
            common=True),
    Command("migrate", "<Domain> <Host>", "Migrate a domain to another machine.",
            [Option("l", "live", "Use live migration."),
             Option("p", "port", "Use specified port for migration.", value="portnum"),
             Option("n", "node", "Use specified NUMA node on target.", value="nodenum"),
             Option("s", "ssl", "Use ssl connection for migration.")], common=True),
    Command("pause", "<Domain>", "Pause execution of a domain.", common=True),
    Command("reboot", "<Domain> [-wa]", "Reboot a domain.",
            [Option("a", "all", "Reboot all domains"),
             Option("w", "wait", "Wait for reboot to complete before returning")], common=True),
    Command("reset", "<Domain>", "Reset a domain."),
    Command("rename", "<Domain> <NewDomainName>", "Rename a domain."),
    Command("restore", "<CheckpointFile> [-p]", "Restore a domain from a saved state.",
            [_paused("Do not unpause domain after restoring it")], common=True),
    Command("resume", "<DomainName> [-p]", "Resume a Xend managed domain",
            [_paused("Do not unpause domain after resuming it")]),
    Command("save", "[-c|--checkpoint] <Domain> <CheckpointFile>",
            "Save a domain state to restore later.",
            [Option("c", "checkpoint", "Leave domain running after creating snapshot")],
            common=True),
    Command("shell", "", "Launch an interactive shell."),
    Command("shutdown", "<Domain> [-waRH]", "Shutdown a domain.",
            [Option("a", "all", "Shutdown all guest domains"),
             Option("w", "wait", "Wait for guest domain to shutdown"),
             Option("H", "halt", "Shutdown guest domain (halt)"),
             Option("R", "reboot", "Reboot guest domain"),
             Option("h", "help", None)], common=True),
    Command("suspend", "<DomainName>", "Suspend a Xend managed domain"),
    Command("sysrq", "<Domain> <letter>", "Send a sysrq to a domain."),
    Command("top", "[-b] [-d SECONDS] [-i N] [-n] [-x] [-v] [-r] [-f]",
            "Monitor a host and the domains in real time.",
            [Option("b", "batch", "Output in batch mode, no user input accepted"),
             Option("d", "delay", "Seconds between updates (default 3)", value="SECONDS"),
             Option("i", "iterations", "Number of iterations to display before ending",
                    value="N"),
             Option("n", "networks", "Output vif network data"),
             Option("x", "vbds", "Output vbd block device data"),
             Option("v", "vcpus", "Output vcpu data"),
             Option("r", "repeat-header", "Repeat table header before each domain"),
             Option("f", "full-name", "Output the full domain name (not truncated)")],
            common=True),
    Command("trigger", "<Domain> <nmi|reset|init|s3resume|power> [<VCPU>]",
            "Send a trigger to a domain."),
    Command("unpause", "<Domain>", "Unpause a paused domain.", common=True),
    Command("uptime", "[-s|--short] [Domain, ...]", "Print uptime for all/some domains.",
            [Option("s", "short", "Print a short uptime")], common=True),
    Command("vcpu-list", "[Domain, ...]", "List the VCPUs for all/some domains.", common=True),
    Command("sched-credit", "[-d <Domain> [-w[=WEIGHT]|-c[=CAP]]]",
            "Get/set credit scheduler parameters.",
            [Option("d", "domain", "Domain to modify", value="DOMAIN"),
             Option("w", "weight", "Weight (int)", value="WEIGHT"),
             Option("c", "cap", "Cap (int)", value="CAP")]),
    Command("sched-sedf", "<Domain> [options]", "Get/set EDF parameters.",
            [Option("p", "period", "Relative deadline(ms)", value="MS"),
             Option("s", "slice", "Worst-case execution time(ms). (slice < period)", value="MS"),
             Option("l", "latency", "Scaled period (ms) when domain performs heavy I/O",
                    value="MS"),
             # xm's help said --extra, its code parsed --extratime (which --extra abbreviates)
             Option("e", "extratime", "Flag (0 or 1) controls if domain can run in extra time.",
                    value="FLAG"),
             Option("w", "weight", "CPU Period/slice (do not set with --period/--slice)",
                    value="FLOAT")]),
    # vCPUs and memory (issue 10; cli/commands/resources.py)
    Command("vcpu-pin", "<Domain> <VCPU|all> <CPUs|all>", "Set which CPUs a VCPU can use."),
    Command("vcpu-set", "<Domain> <vCPUs>",
            "Set the number of active VCPUs for allowed for the domain.", common=True),
    Command("mem-max", "<Domain> <Mem>", "Set the maximum amount reservation for a domain."),
    Command("mem-set", "<Domain> <Mem>", "Set the current memory usage for a domain.",
            common=True),
    Command("block-attach", "<Domain> <BackDev> <FrontDev> <Mode> [BackDomain]",
            "Create a new virtual block device."),
    Command("block-configure", "<Domain> <BackDev> <FrontDev> <Mode> [BackDomain]",
            "Change block device configuration (CD-ROM media)."),
    Command("block-detach", "<Domain> <DevId> [-f|--force]",
            "Destroy a domain's virtual block device."),
    Command("block-list", "<Domain> [--long]", "List virtual block devices for a domain.",
            [_LONG]),
    Command("network-attach", "<Domain> [type=<type>] [mac=<mac>] [bridge=<bridge>] "
            "[ip=<ip>] [script=<script>] [backend=<BackDomain>] [vifname=<name>] "
            "[rate=<rate>] [model=<model>] [accel=<accel>]",
            "Create a new virtual network device."),
    Command("network-detach", "<Domain> <DevId> [-f|--force]",
            "Destroy a domain's virtual network device."),
    Command("network-list", "<Domain> [--long]", "List virtual network interfaces for a domain.",
            [_LONG]),
    Command("vtpm-list", "<Domain> [--long]", "List virtual TPM devices.", [_LONG]),
    # USB (3.4; cli/commands/devices.py): also tablet, mouse and keyboard
    Command("usb-add", "<domain> <[host:bus.addr] [host:vendor_id:product_id]>",
            "Add the usb device to a domain."),
    Command("usb-del", "<domain> <[host:bus.addr] [host:vendor_id:product_id]>",
            "Delete the usb device from a domain."),
    Command("debug-keys", "<Keys>", "Send debug keys to Xen."),
    Command("dmesg", "[-c|--clear]", "Read and/or clear xend's message buffer.",
            [Option("c", "clear", "Clear the message buffer after reading")]),
    Command("info", "[-c|--config]", "Get information about Xen host.",
            [Option("c", "config", "List Xend configuration parameters")], common=True),
    Command("log", "", "Print Xend log"),
    Command("serve", "", "Proxy Xend XMLRPC over stdio."),
    Command("help", "[--long] [<Command>]", "Display this message."),
    # access control (sHype/ACM, spec §8.1)
    Command("labels", "[policy] [type=dom|res|any]",
            "List <type> labels for (active) policy."),
    Command("addlabel", "<label> {dom <ConfigFile>|res <resource>|mgt <managed domain>} "
                        "[<policy>]",
            "Add security label to domain."),
    Command("rmlabel", "{dom <ConfigFile>|res <Resource>|mgt<managed domain>}",
            "Remove a security label from domain."),
    Command("getlabel", "{dom <ConfigFile>|res <Resource>|mgt <managed domain>}",
            "Show security label for domain or resource."),
    Command("dry-run", "<ConfigFile>", "Test if a domain can access its resources."),
    Command("resources", "", "Show info for each labeled resource."),
    Command("dumppolicy", "", "Print hypervisor ACM state information."),
    Command("setpolicy", "<policytype> <policyfile> [options]",
            "Set the policy of the system."),
    Command("getpolicy", "[options]", "Get the policy of the system.",
            [Option("", "dumpxml", "Display the XML of the policy.")]),
    Command("resetpolicy", "", "Set the policy of the system to the default policy."),
    Command("makepolicy", "<policy>", "Check a policy (dom0 needs no compiled binary)."),
    Command("loadpolicy", "<policy>", "Load a policy (install and activate it)."),
    Command("cfgbootpolicy", "<policy> [boot-title]",
            "Install a policy that xend loads at every start."),
]
BY_NAME = {c.name: c for c in COMMANDS}

#: old name -> new name (spec §1.1)
DEPRECATED = {"balloon": "mem-set", "set-vcpus": "vcpu-set", "vif-list": "network-list",
              "vbd-create": "block-attach", "vbd-destroy": "block-detach",
              "vbd-list": "block-list"}


#: commands whose code lives in a submodule of cli.commands (imported only to run one);
#: the rest are in cli.commands itself
SUBMODULE = {
    "create": "starting", "new": "starting", "start": "starting", "delete": "starting",
    "console": "starting", "vncviewer": "vnc",
    "shutdown": "stopping", "reboot": "stopping", "dump-core": "stopping",
    "save": "moving", "restore": "moving", "suspend": "moving", "resume": "moving",
    "migrate": "moving",
    "block-attach": "devices", "block-configure": "devices", "block-detach": "devices",
    "block-list": "devices", "network-attach": "devices", "network-detach": "devices",
    "network-list": "devices", "vtpm-list": "devices", "usb-add": "devices",
    "usb-del": "devices",
    "labels": "security", "addlabel": "security", "rmlabel": "security",
    "getlabel": "security", "dry-run": "security", "resources": "security",
    "dumppolicy": "security", "setpolicy": "security", "getpolicy": "security",
    "resetpolicy": "security", "makepolicy": "security", "loadpolicy": "security",
    "cfgbootpolicy": "security",
    "sched-credit": "sched", "sched-sedf": "sched",
    "top": "top",
    "trigger": "host", "debug-keys": "host", "serve": "host", "shell": "host",
    "vcpu-pin": "resources", "vcpu-set": "resources", "mem-max": "resources",
    "mem-set": "resources",
}


def command_usage(cmd: Command) -> str:
    text = f"Usage: xm {cmd.name} {cmd.synopsis}\n\n{cmd.description}\n"
    if cmd.help_rows():
        text += "\nOptions:\n" + "".join("  %-30s %-43s\n" % o for o in cmd.help_rows())
    return text


def short_help() -> str:
    lines = [USAGE_HEAD, "Common 'xm' commands:\n"]
    lines += [" %-18s %s" % (c.name, c.description) for c in COMMANDS if c.common]
    lines.append("\n" + USAGE_FOOT)
    return "\n".join(lines)


def long_help(with_options: bool) -> str:
    lines = [USAGE_HEAD, "xm full list of subcommands:\n"]
    for c in COMMANDS:
        lines.append(" %-18s %s" % (c.name, c.description))
        if with_options:
            lines += ["   %-30s %s" % o for o in c.help_rows()]
    lines.append("\n" + USAGE_FOOT)
    return "\n".join(lines)


def resolve(word: str) -> Command | None:
    """Exact name, else an unambiguous prefix longer than one letter."""
    if word in BY_NAME:
        return BY_NAME[word]
    if len(word) > 1:
        matches = [c for c in COMMANDS if c.name.startswith(word)]
        if len(matches) == 1:
            return matches[0]
    return None
