# SPDX-License-Identifier: LGPL-2.1-or-later
# Kernel configuration shared by scripts/kernel-build and scripts/series-check. Source it
# after scripts/lib/common.sh; do not run it.
# shellcheck shell=bash

# kconfig_make SRC OUT LOG FRAGMENT...: OUT/.config = `make tinyconfig`, the fragments
# merged on top (scripts/kconfig/merge_config.sh, the last one wins), then olddefconfig.
# make runs with CC="ccache gcc", as the build does (the compiler is part of the config).
# make's output goes to LOG; on failure its tail is shown and the script dies.
kconfig_make() {
	local src=$1 out=$2 log=$3 f
	shift 3
	local frags=()
	for f in "$@"; do frags+=("$XMEM_REPO/$f"); done
	{
		make -C "$src" O="$out" CC="ccache gcc" HOSTCC="ccache gcc" tinyconfig &&
			(cd "$src" && scripts/kconfig/merge_config.sh -m -O "$out" "$out/.config" "${frags[@]}") &&
			make -C "$src" O="$out" CC="ccache gcc" HOSTCC="ccache gcc" olddefconfig
	} >>"$log" 2>&1 || {
		tail -n 40 "$log" | sed 's/^/  /' >&2
		die "configuring $out from ${*} failed, full log: $log"
	}
}

# kconfig_verify CONFIG SKIP FRAGMENT...: every CONFIG_ symbol the fragments set (the last
# one wins) must be set the same way in CONFIG; =n or "is not set" means absent or not set.
# SKIP is a space-separated list of symbols not to check (symbols the tree does not define
# yet). Dies naming every symbol that is not as asked.
kconfig_verify() {
	local config=$1 skip=" $2 " line sym val bad=()
	shift 2
	local -A want=() have=()
	while IFS= read -r line; do
		if [[ $line =~ ^(CONFIG_[A-Za-z0-9_]+)=(.*)$ ]]; then
			have[${BASH_REMATCH[1]}]=${BASH_REMATCH[2]}
		fi
	done <"$config"
	while IFS= read -r line; do
		if [[ $line =~ ^(CONFIG_[A-Za-z0-9_]+)=(.*)$ ]]; then
			want[${BASH_REMATCH[1]}]=${BASH_REMATCH[2]}
		elif [[ $line =~ ^#\ (CONFIG_[A-Za-z0-9_]+)\ is\ not\ set ]]; then
			want[${BASH_REMATCH[1]}]=n
		fi
	done < <(cd "$XMEM_REPO" && cat "$@")
	for sym in "${!want[@]}"; do
		[[ $skip == *" $sym "* ]] && continue
		val=${want[$sym]}
		if [[ $val == n ]]; then
			[[ -z ${have[$sym]+x} || ${have[$sym]} == n ]] || bad+=("$sym=n (got ${have[$sym]})")
		elif [[ ${have[$sym]-} != "$val" ]]; then
			bad+=("$sym=$val (got ${have[$sym]:-not set})")
		fi
	done
	if ((${#bad[@]})); then
		mapfile -t bad < <(printf '%s\n' "${bad[@]}" | LC_ALL=C sort)
		die "config symbols not set as asked (missing dependency or unknown symbol): ${bad[*]}"
	fi
}
