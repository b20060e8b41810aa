# Sourced by netns/lab.sh and netns/test.sh: build as the user, ask for root only for
# what needs it (apt-get, network namespaces, the end-to-end tests).
#
# - run as a normal user: cargo is the user's (rustup's ~/.cargo/bin), root comes
#   from `sudo` where needed;
# - run as root through sudo (`sudo bash netns/...`): the build still runs as
#   $SUDO_USER with that user's cargo, so target/ never gets root-owned files;
# - run as root without sudo (CI): everything as root.

# The user who owns the build: $SUDO_USER when root came from sudo, else ourselves.
build_user() {
  if [ "$(id -u)" -eq 0 ] && [ -n "${SUDO_USER:-}" ] && [ "$SUDO_USER" != root ]; then
    echo "$SUDO_USER"
  else
    id -un
  fi
}

# Runs "$@" as the build user, with that user's ~/.cargo/bin on PATH (sudo's
# secure_path drops it).
as_build_user() {
  local user home
  user=$(build_user)
  home=$(getent passwd "$user" | cut -d: -f6)
  if [ "$user" = "$(id -un)" ]; then
    PATH="$home/.cargo/bin:$PATH" "$@"
  else
    sudo -u "$user" -H env "PATH=$home/.cargo/bin:$PATH" "$@"
  fi
}

# Dies with advice unless the build user has cargo.
require_cargo() {
  as_build_user sh -c 'command -v cargo >/dev/null' && return 0
  echo "$(basename "$0"): cargo not found for user $(build_user): install Rust with rustup" \
    "(https://rustup.rs) as that user, then run this again" >&2
  exit 1
}

# Runs "$@" as root: directly when we are root, else through sudo.
as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -- "$@"; fi
}
