# Shared by the network and vif scripts (sourced).  dom0 calls them as Xen did:
#   network-*  start|stop|status [name=value ...]    (from xend-config's network-script)
#   vif-*      online|offline                         with vif, mac, ip, bridge, domid,
#                                                      devid in the environment
# xend has already made the tap and put it on its bridge; these scripts carry
# the policy and may be replaced by the user.
set -u
log() { echo "$(basename "$0"): $*" >&2; }
fatal() { log "$*"; exit 1; }
# name=value arguments become variables
evalargs() { for a in "$@"; do case "$a" in *=*) eval "${a%%=*}=\"\${a#*=}\"" ;; esac; done; }
