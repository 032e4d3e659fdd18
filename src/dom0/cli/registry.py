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
    Command("shutdown", "<Domain> [-waRH]", "Shutdown a domain.",
            [Option("a", "all", "Shutdown all guest domains"),
             Option("w", "wait", "Wait for guest domain to shutdown"),
             Option("H", "halt", "Shutdown guest domain (halt)"),
             Option("R", "reboot", "Reboot guest domain"),
             Option("h", "help", None)], common=True),
    Command("suspend", "<DomainName>", "Suspend a Xend managed domain"),
    Command("sysrq", "<Domain> <letter>", "Send a sysrq to a domain."),
    Command("unpause", "<Domain>", "Unpause a paused domain.", common=True),
    Command("uptime", "[-s|--short] [Domain, ...]", "Print uptime for all/some domains.",
            [Option("s", "short", "Print a short uptime")], common=True),
    Command("vcpu-list", "[Domain, ...]", "List the VCPUs for all/some domains.", common=True),
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
    Command("dmesg", "[-c|--clear]", "Read and/or clear xend's message buffer.",
            [Option("c", "clear", "Clear the message buffer after reading")]),
    Command("info", "[-c|--config]", "Get information about Xen host.",
            [Option("c", "config", "List Xend configuration parameters")], common=True),
    Command("log", "", "Print Xend log"),
    Command("help", "[--long] [<Command>]", "Display this message."),
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
    "console": "starting",
    "shutdown": "stopping", "reboot": "stopping", "dump-core": "stopping",
    "save": "moving", "restore": "moving", "suspend": "moving", "resume": "moving",
    "migrate": "moving",
    "block-attach": "devices", "block-configure": "devices", "block-detach": "devices",
    "block-list": "devices", "network-attach": "devices", "network-detach": "devices",
    "network-list": "devices",
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
