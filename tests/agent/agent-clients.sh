#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# xmem-agent against clients no one here wrote: ssh-add, ssh-keygen -Y and
# ssh to a local sshd, one case per run (meson runs each as its own test).
#   agent-clients.sh CASE      XMEM_AGENT: the xmem-agent binary
# XMEM_AGENT_BACKEND=exclusive (tests/vm/guest-tests.sh) also demands that
# the agent's keys are in memfd_exclusive, XMEM_AGENT_ENGINE=epoll (meson test
# agent_epoll_*) that it is served on epoll. Exit 0 pass, 1 fail.
set -uo pipefail

agent_bin=${XMEM_AGENT:?XMEM_AGENT not set}
case_name=${1:?usage: agent-clients.sh CASE}
T=$(mktemp -d "${TMPDIR:-/tmp}/xmem-agent-test.XXXXXX")
export HOME=$T		# the clients must not touch the user's ~/.ssh
agent_pid=
sshd_pid=
failures=0

cleanup() {
	[ -n "$sshd_pid" ] && kill "$sshd_pid" 2>/dev/null && wait "$sshd_pid" 2>/dev/null
	[ -n "$agent_pid" ] && kill "$agent_pid" 2>/dev/null && wait "$agent_pid" 2>/dev/null
	rm -rf "$T"
}
trap cleanup EXIT

fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
pass() { echo "ok: $*"; }
# check DESCRIPTION EXPECTED-STATUS CMD...: runs CMD, output in $T/last
check() {
	local what=$1 want=$2
	shift 2
	"$@" >"$T/last" 2>&1
	local got=$?
	if [ "$got" -eq "$want" ]; then pass "$what (status $got)"; else
		fail "$what: status $got, expected $want"; sed 's/^/    /' "$T/last"; fi
}
# contains DESCRIPTION FILE TEXT
contains() {
	if grep -qF -- "$3" "$2"; then pass "$1"; else
		fail "$1: '$3' not in $2:"; sed 's/^/    /' "$2"; fi
}
lacks() {
	if grep -qF -- "$3" "$2"; then fail "$1: '$3' in $2"; sed 's/^/    /' "$2"; else pass "$1"; fi
}

# start_agent [ARGS...]: xmem-agent -D on $T/sock, log in $T/agent.log
start_agent() {
	export SSH_AUTH_SOCK=$T/sock
	"$agent_bin" -D -a "$SSH_AUTH_SOCK" "$@" >"$T/agent.out" 2>"$T/agent.log" &
	agent_pid=$!
	for _ in $(seq 200); do
		grep -q "listening on" "$T/agent.log" 2>/dev/null && [ -S "$SSH_AUTH_SOCK" ] && break
		sleep 0.05
	done
	if ! grep -q "listening on" "$T/agent.log"; then
		fail "agent did not start"; cat "$T/agent.log"; exit 1
	fi
	if [ "${XMEM_AGENT_BACKEND:-}" = exclusive ]; then
		contains "agent keeps keys in memfd_exclusive" "$T/agent.log" "keys in memfd_exclusive"
	fi
	if [ -n "${XMEM_AGENT_ENGINE:-}" ]; then
		contains "agent served on $XMEM_AGENT_ENGINE" "$T/agent.log" "served on $XMEM_AGENT_ENGINE)"
	fi
}

stop_agent() {
	kill "$agent_pid"; wait "$agent_pid"; local st=$?
	agent_pid=
	[ "$st" -eq 0 ] && pass "agent stopped on SIGTERM" || fail "agent exit status $st on SIGTERM"
	[ -e "$SSH_AUTH_SOCK" ] && fail "socket $SSH_AUTH_SOCK left behind" || pass "socket removed"
}

key() {	# key NAME COMMENT [TYPE]: an unencrypted key made by ssh-keygen
	ssh-keygen -q -t "${3:-ed25519}" -N '' -C "$2" -f "$T/$1" || { fail "ssh-keygen"; exit 1; }
}

# The number of identities ssh-add -l lists (0 for "no identities").
count_ids() { ssh-add -l 2>/dev/null | grep -c SHA256; }

askpass() {	# a script printing $1, for ssh-add -x/-X
	printf '#!/bin/sh\necho %s\n' "$1" >"$T/askpass-$1"
	chmod +x "$T/askpass-$1"
	echo "$T/askpass-$1"
}

case_list_add_delete() {
	start_agent
	key k1 "first key"
	key k2 "second key"
	check "ssh-add -l on an empty agent says so" 1 ssh-add -l
	contains "empty agent message" "$T/last" "The agent has no identities."
	check "ssh-add k1" 0 ssh-add "$T/k1"
	check "ssh-add k2" 0 ssh-add "$T/k2"
	check "ssh-add -l" 0 ssh-add -l
	contains "-l lists k1's fingerprint" "$T/last" "$(ssh-keygen -lf "$T/k1.pub" | cut -d' ' -f2)"
	contains "-l lists k2's comment" "$T/last" "second key (ED25519)"
	check "ssh-add -L" 0 ssh-add -L
	contains "-L prints k1's public key" "$T/last" "$(cut -d' ' -f1,2 "$T/k1.pub")"
	contains "-L prints k2's public key" "$T/last" "$(cut -d' ' -f1,2 "$T/k2.pub")"
	check "ssh-add -d k1" 0 ssh-add -d "$T/k1.pub"
	check "ssh-add -L after -d" 0 ssh-add -L
	lacks "k1 is gone" "$T/last" "$(cut -d' ' -f2 "$T/k1.pub")"
	contains "k2 stays" "$T/last" "$(cut -d' ' -f2 "$T/k2.pub")"
	check "ssh-add -d k1 again fails" 1 ssh-add -d "$T/k1.pub"
	check "ssh-add -D" 0 ssh-add -D
	[ "$(count_ids)" -eq 0 ] && pass "no identities after -D" || fail "identities left after -D"
	contains "removal wipes" "$T/agent.log" "removed, wiped"
	[ "${XMEM_AGENT_BACKEND:-}" = exclusive ] &&
		contains "keys added in memfd_exclusive" "$T/agent.log" "added Ed25519 key 'first key' in memfd_exclusive"
	stop_agent
}

case_lifetime() {
	start_agent
	key k1 "short-lived"
	key k2 "long-lived"
	# k2 first and a lifetime of 6 s: under TCG with tests in parallel, one ssh-add (a parser
	# fork+exec) took long enough that a 2 s key expired before the listing (seen once).
	check "ssh-add k2" 0 ssh-add "$T/k2"
	check "ssh-add -t 6 k1" 0 ssh-add -t 6 "$T/k1"
	[ "$(count_ids)" -eq 2 ] && pass "two keys listed" || fail "$(count_ids) keys listed, expected 2"
	# Wait for the expiry by what the agent logs, not by a clock (the VM's is emulated).
	for _ in $(seq 600); do grep -q "'short-lived' expired" "$T/agent.log" && break; sleep 0.1; done
	contains "k1 expired" "$T/agent.log" "key 'short-lived' expired, wiped"
	check "ssh-add -L after the expiry" 0 ssh-add -L
	lacks "k1 is no longer listed" "$T/last" "$(cut -d' ' -f2 "$T/k1.pub")"
	contains "k2 is still listed" "$T/last" "$(cut -d' ' -f2 "$T/k2.pub")"
	stop_agent
	# -t on the agent: the default lifetime of every key.
	start_agent -t 1
	check "ssh-add k1 to an agent started with -t 1" 0 ssh-add "$T/k1"
	contains "the default lifetime applies" "$T/agent.log" "for 1 s"
	for _ in $(seq 600); do [ "$(count_ids)" -eq 0 ] && break; sleep 0.1; done
	[ "$(count_ids)" -eq 0 ] && pass "k1 expired under -t 1" || fail "k1 still listed under -t 1"
	stop_agent
}

case_lock() {
	start_agent
	key k1 "locked key"
	check "ssh-add k1" 0 ssh-add "$T/k1"
	echo data >"$T/msg"
	export SSH_ASKPASS_REQUIRE=force DISPLAY=none
	SSH_ASKPASS=$(askpass sesame) check "ssh-add -x (lock)" 0 ssh-add -x
	check "ssh-add -l while locked" 1 ssh-add -l
	contains "locked: no identities" "$T/last" "The agent has no identities."
	check "ssh-keygen -Y sign while locked fails" 255 ssh-keygen -Y sign -f "$T/k1.pub" -n file -U "$T/msg"
	check "ssh-add k1 while locked fails" 1 ssh-add "$T/k1"
	SSH_ASKPASS=$(askpass sesame) check "ssh-add -x twice fails" 1 ssh-add -x
	SSH_ASKPASS=$(askpass wrong) check "ssh-add -X with the wrong passphrase fails" 1 ssh-add -X
	contains "wrong passphrase logged" "$T/agent.log" "UNLOCK: wrong passphrase"
	check "still locked" 1 ssh-add -l
	SSH_ASKPASS=$(askpass sesame) check "ssh-add -X (unlock)" 0 ssh-add -X
	[ "$(count_ids)" -eq 1 ] && pass "key back after unlock" || fail "$(count_ids) keys after unlock"
	check "ssh-keygen -Y sign after unlock" 0 ssh-keygen -Y sign -f "$T/k1.pub" -n file -U "$T/msg"
	SSH_ASKPASS=$(askpass sesame) check "ssh-add -X when not locked fails" 1 ssh-add -X
	stop_agent
}

case_sign_verify() {
	start_agent
	key k1 "signer"
	key other "not in the agent"
	check "ssh-add k1" 0 ssh-add "$T/k1"
	echo "a message to sign" >"$T/msg"
	check "ssh-keygen -Y sign -U with the agent's key" 0 ssh-keygen -Y sign -f "$T/k1.pub" -n file -U "$T/msg"
	[ -s "$T/msg.sig" ] && pass "signature written" || fail "no signature file"
	echo "me $(cat "$T/k1.pub")" >"$T/allowed"
	check "ssh-keygen -Y verify" 0 sh -c "ssh-keygen -Y verify -f '$T/allowed' -I me -n file -s '$T/msg.sig' < '$T/msg'"
	contains "good signature" "$T/last" 'Good "file" signature for me with ED25519 key'
	echo "a different message" >"$T/msg2"
	check "the signature does not verify another message" 255 sh -c "ssh-keygen -Y verify -f '$T/allowed' -I me -n file -s '$T/msg.sig' < '$T/msg2'"
	check "ssh-keygen -Y sign with a key the agent lacks fails" 255 ssh-keygen -Y sign -f "$T/other.pub" -n file -U "$T/msg2"
	check "ssh-add -D" 0 ssh-add -D
	rm -f "$T/msg.sig"
	check "sign after -D fails" 255 ssh-keygen -Y sign -f "$T/k1.pub" -n file -U "$T/msg"
	stop_agent
}

case_refusals() {
	start_agent
	key ec "ecdsa key" ecdsa
	key rsa "rsa key" rsa
	key k1 "confirm me"
	check "ssh-add of an ECDSA key is refused" 1 ssh-add "$T/ec"
	contains "ECDSA refusal says why" "$T/agent.log" "refused: key-type ecdsa-sha2-nistp256 (only Ed25519 keys can be held whole in exclusive memory"
	check "ssh-add of an RSA key is refused" 1 ssh-add "$T/rsa"
	contains "RSA refusal says why" "$T/agent.log" "refused: key-type ssh-rsa"
	check "ssh-add -c (confirm) is refused" 1 ssh-add -c "$T/k1"
	contains "confirm refusal logged" "$T/agent.log" "the confirm constraint is not supported"
	[ "$(count_ids)" -eq 0 ] && pass "nothing was added" || fail "$(count_ids) keys added"
	check "the same key without -c is taken" 0 ssh-add "$T/k1"
	stop_agent
}

# sshd on 127.0.0.1 at a free unprivileged port, as this user, with its own
# host key and configuration; the client may use the agent only.
case_ssh_login() {
	local sshd=/usr/sbin/sshd
	[ -x "$sshd" ] || { fail "$sshd missing (openssh-server: scripts/install-deps)"; exit 1; }
	if [ "$(id -u)" -eq 0 ] && [ ! -d /run/sshd ]; then
		# sshd as root chroots its unprivileged child there (the package's tmpfiles.d
		# makes it at boot; the VM's /run is a fresh tmpfs).
		mkdir -m 0755 /run/sshd || { fail "cannot make /run/sshd"; exit 1; }
		echo "note: made /run/sshd (sshd's privilege separation directory)"
	fi
	start_agent
	key k1 "login key"
	key other "stranger"
	ssh-keygen -q -t ed25519 -N '' -f "$T/hostkey"
	cp "$T/k1.pub" "$T/authorized_keys"
	local port free_port='import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
	if ! port=$(python3 -c "$free_port" 2>"$T/port.err"); then
		# The VM (scripts/vm-run) boots with the loopback interface down.
		if [ "$(id -u)" -eq 0 ] && ip link set lo up; then
			echo "note: brought the loopback interface up (it was down: $(tail -1 "$T/port.err"))"
			port=$(python3 -c "$free_port")
		fi
	fi
	[ -n "$port" ] || { fail "no free port on 127.0.0.1"; exit 1; }
	cat >"$T/sshd_config" <<CONF
ListenAddress 127.0.0.1:$port
HostKey $T/hostkey
PidFile none
AuthorizedKeysFile $T/authorized_keys
StrictModes no
UsePAM no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
AllowTcpForwarding no
X11Forwarding no
PrintMotd no
LogLevel VERBOSE
CONF
	"$sshd" -D -e -f "$T/sshd_config" 2>"$T/sshd.log" &
	sshd_pid=$!
	for _ in $(seq 200); do grep -q "Server listening" "$T/sshd.log" && break; sleep 0.05; done
	contains "sshd listening" "$T/sshd.log" "Server listening on 127.0.0.1 port $port"
	echo "[127.0.0.1]:$port $(cut -d' ' -f1,2 "$T/hostkey.pub")" >"$T/known_hosts"
	local ssh=(ssh -F /dev/null -p "$port" -o BatchMode=yes -o IdentityFile=none
		-o IdentitiesOnly=no -o IdentityAgent="$SSH_AUTH_SOCK"
		-o PasswordAuthentication=no -o KbdInteractiveAuthentication=no
		-o StrictHostKeyChecking=yes -o UserKnownHostsFile="$T/known_hosts"
		-o GlobalKnownHostsFile=/dev/null -o ConnectTimeout=30 -T
		"$(id -un)@127.0.0.1")
	check "ssh with an empty agent is refused" 255 "${ssh[@]}" true
	contains "refused by the server" "$T/last" "Permission denied (publickey)"
	check "ssh-add k1" 0 ssh-add "$T/k1"
	check "ssh with the agent's key logs in and runs true" 0 "${ssh[@]}" true
	check "ssh runs a command" 0 "${ssh[@]}" echo logged-in-through-xmem-agent
	contains "the command's output came back" "$T/last" "logged-in-through-xmem-agent"
	contains "sshd accepted the agent's key" "$T/sshd.log" "Accepted publickey for $(id -un)"
	check "ssh-add -D" 0 ssh-add -D
	check "ssh with the agent emptied is refused" 255 "${ssh[@]}" true
	contains "refused by the server" "$T/last" "Permission denied (publickey)"
	check "ssh-add other (not authorized)" 0 ssh-add "$T/other"
	check "ssh with an unauthorized key is refused" 255 "${ssh[@]}" true
	contains "refused by the server" "$T/last" "Permission denied (publickey)"
	kill "$sshd_pid"; wait "$sshd_pid" 2>/dev/null; sshd_pid=
	stop_agent
}

case_command_line() {
	key k1 "cli key"
	# ssh-agent's eval output, and -k.
	local out
	out=$(SHELL=/bin/sh "$agent_bin" -s -a "$T/daemon.sock")
	echo "$out" >"$T/eval"
	contains "-s prints SSH_AUTH_SOCK" "$T/eval" "SSH_AUTH_SOCK=$T/daemon.sock; export SSH_AUTH_SOCK;"
	contains "-s prints SSH_AGENT_PID" "$T/eval" "; export SSH_AGENT_PID;"
	eval "$out" >/dev/null
	[ -S "$SSH_AUTH_SOCK" ] && pass "daemon listens" || fail "no socket at $SSH_AUTH_SOCK"
	kill -0 "$SSH_AGENT_PID" 2>/dev/null && pass "daemon runs as $SSH_AGENT_PID" || fail "no daemon"
	check "ssh-add to the daemon" 0 ssh-add "$T/k1"
	check "ssh-add -l from the daemon" 0 ssh-add -l
	local daemon=$SSH_AGENT_PID
	out=$("$agent_bin" -k -s)
	echo "$out" >"$T/kill"
	contains "-k prints unset" "$T/kill" "unset SSH_AUTH_SOCK;"
	contains "-k names the pid" "$T/kill" "echo Agent pid $daemon killed;"
	for _ in $(seq 100); do kill -0 "$daemon" 2>/dev/null || break; sleep 0.05; done
	kill -0 "$daemon" 2>/dev/null && fail "daemon still running after -k" || pass "daemon gone after -k"
	[ -e "$T/daemon.sock" ] && fail "daemon left its socket" || pass "daemon removed its socket"
	out=$("$agent_bin" -c -a "$T/csh.sock")
	echo "$out" >"$T/csh"
	contains "-c prints setenv" "$T/csh" "setenv SSH_AUTH_SOCK $T/csh.sock;"
	SSH_AGENT_PID=$(sed -n 's/^setenv SSH_AGENT_PID \([0-9]*\);$/\1/p' "$T/csh") check "-k -c" 0 "$agent_bin" -k -c
	contains "-k -c prints unsetenv" "$T/last" "unsetenv SSH_AGENT_PID;"
	# Default socket path, and SHELL choosing csh output.
	out=$(SHELL=/bin/tcsh TMPDIR=$T "$agent_bin")
	echo "$out" >"$T/default"
	contains "csh output from \$SHELL" "$T/default" "setenv SSH_AUTH_SOCK $T/xmem-agent-"
	SSH_AGENT_PID=$(sed -n 's/^setenv SSH_AGENT_PID \([0-9]*\);$/\1/p' "$T/default") check "-k the default-path agent" 0 "$agent_bin" -k
	# Errors.
	check "-k without SSH_AGENT_PID fails" 1 env -u SSH_AGENT_PID "$agent_bin" -k
	contains "-k error message" "$T/last" "SSH_AGENT_PID not set, cannot kill agent"
	check "bad -t" 2 "$agent_bin" -D -a "$T/x.sock" -t 5x
	contains "bad -t message" "$T/last" "-t: bad lifetime '5x'"
	check "unknown option" 2 "$agent_bin" -q
	check "--help" 0 "$agent_bin" --help
	contains "--help shows usage" "$T/last" "usage: xmem-agent"
	start_agent
	check "a second agent on a live socket fails" 1 "$agent_bin" -D -a "$SSH_AUTH_SOCK"
	contains "bind error named" "$T/last" "bind $SSH_AUTH_SOCK"
	stop_agent
	# No exclusive memory for the agent (RLIMIT_MEMLOCK 0, without CAP_IPC_LOCK): the shell
	# gets the error and status 1, not a background agent that died (new-user report).
	mkdir -m 1777 "$T/nobody"
	check "-s with RLIMIT_MEMLOCK 0 fails before the fork" 1 setpriv --reuid=65534 \
		--regid=65534 --clear-groups prlimit --memlock=0 "$agent_bin" -s -a "$T/nobody/sock"
	contains "the RLIMIT_MEMLOCK error reaches the shell" "$T/last" "cannot start: exclusive memory"
	lacks "no SSH_AUTH_SOCK printed" "$T/last" "SSH_AUTH_SOCK="
	[ ! -e "$T/nobody/sock" ] && pass "no socket left" || fail "$T/nobody/sock left behind"
}

# The parser's sandbox: the self-test and the parser itself cannot open a
# file this test can read; a crashing or hanging parser costs only its request.
case_sandbox() {
	echo "secret file contents" >"$T/readable"
	check "control: the test can read the file" 0 cat "$T/readable"
	check "sandbox self-test" 0 "$agent_bin" --sandbox-selftest "$T/readable"
	for what in "open $T/readable" "openat $T/readable" "fopen $T/readable" \
		"socket AF_INET" "socket AF_UNIX" "execve /bin/true" fork; do
		contains "sandbox denies $what" "$T/last" "$what: denied"
	done
	contains "exclusive memory works in the sandbox" "$T/last" "exclusive memory: works"
	start_agent --test-parser-hook="open:$T/readable"
	key k1 "sandboxed"
	check "ssh-add through a parser that tried to open a file" 0 ssh-add "$T/k1"
	contains "the parser could not open the file" "$T/agent.log" "test hook: open $T/readable: denied (Operation not permitted)"
	stop_agent
}

case_parser_crash() {
	start_agent --test-parser-hook=crash:boom
	key k1 "before"
	key bad "boom"
	key k3 "after"
	check "ssh-add k1" 0 ssh-add "$T/k1"
	# A client connected across the crash, idle meanwhile.
	python3 "$(dirname "$0")/rawclient.py" hold "$SSH_AUTH_SOCK" "$T/hold" &
	local holder=$!
	for _ in $(seq 200); do [ -e "$T/hold.ready" ] && break; sleep 0.05; done
	check "ssh-add of the key whose parser crashes fails" 1 ssh-add "$T/bad"
	contains "the crash is logged" "$T/agent.log" "the parser died of signal 6"
	check "ssh-add k3 (a new parser)" 0 ssh-add "$T/k3"
	[ "$(count_ids)" -eq 2 ] && pass "k1 and k3 held" || fail "$(count_ids) keys, expected 2"
	echo m >"$T/msg"
	check "k1 still signs" 0 ssh-keygen -Y sign -f "$T/k1.pub" -n file -U "$T/msg"
	touch "$T/hold.go"
	wait "$holder"; local st=$?
	[ "$st" -eq 0 ] && pass "the client connected across the crash is served" || fail "held client: status $st"
	stop_agent
	start_agent --test-parser-hook=hang:slow
	key slow "slow"
	check "ssh-add of a key whose parser hangs fails" 1 ssh-add "$T/slow"
	contains "the hang is logged" "$T/agent.log" "no answer from the parser"
	contains "the hung parser is killed" "$T/agent.log" "killed"
	check "ssh-add k1 after the hang" 0 ssh-add "$T/k1"
	stop_agent
}

case_bad_input() {
	start_agent
	key k1 "held throughout"
	check "ssh-add k1" 0 ssh-add "$T/k1"
	python3 "$(dirname "$0")/rawclient.py" bad "$SSH_AUTH_SOCK" "$agent_pid" >"$T/bad" 2>&1
	local st=$?
	cat "$T/bad"
	[ "$st" -eq 0 ] && pass "every malformed message answered as the protocol says" ||
		fail "rawclient bad: status $st"
	check "k1 still listed" 0 ssh-add -l
	contains "k1 still held" "$T/last" "held throughout"
	stop_agent
}

declare -F "case_$case_name" >/dev/null || { echo "unknown case $case_name"; exit 2; }
"case_$case_name"
if [ "$failures" -ne 0 ]; then
	echo "$case_name: $failures check(s) failed"
	echo "--- agent log"; cat "$T/agent.log" 2>/dev/null
	exit 1
fi
echo "$case_name: all checks passed"
