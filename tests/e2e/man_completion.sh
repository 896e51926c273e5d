#!/usr/bin/env bash
# Issue 18, point 7: ferry(1) and ferry.conf(5) and the bash and zsh completion are written
# from the command and configuration tables (ferry help --man, ferry help --completion);
# the pages render without groff warnings; the completion offers commands, options, their
# values and names from the store (ferry list … --output json) in bash (COMP_WORDS, as
# bash-completion calls it) and zsh; make install puts them where Debian's man,
# bash-completion and zsh find them, and make uninstall removes everything install put.
. "$(dirname "$0")/../lib.sh"
cd "$T_DIR" || exit 1
# The commands ferry --help lists ("create queue-item", "dashboard"): its first 28 columns.
help_commands() { ferry --help | sed -n '/^commands:/,/^$/p' | sed '1d;$d' | cut -c3-28 | sed 's/ *$//'; }

# --- man pages --------------------------------------------------------------------------
eq "the build's ferry.1 is what ferry help --man writes" \
    "$(cmp "$FERRY_ROOT/$BUILD/man/ferry.1" <(ferry help --man ferry.1) && echo same)" same
eq "... and its ferry.conf.5" \
    "$(cmp "$FERRY_ROOT/$BUILD/man/ferry.conf.5" <(ferry help --man ferry.conf.5) && echo same)" same
page=$(ferry help --man ferry.1)
missing=
while read -r cmd; do
    grep -qxF ".SS \"${cmd//-/\\-}\"" <<<"$page" || missing+="$cmd, "
done < <(help_commands)
eq "ferry(1) has a section for every command of ferry --help" "$missing" ""
contains "... with each option of the command" "$page" '\fB\-\-vault\-file\fR \fIPATH\fR'
conf=$(ferry help --man ferry.conf.5)
missing=
for key in $(ferry config reference | sed -n 's/^| `\([a-z_.]*\)` |.*/\1/p'); do
    grep -qF "\\fB${key//-/\\-}\\fR (" <<<"$conf" || missing+="$key "
done
eq "ferry.conf(5) has every key of ferry config reference" "$missing" ""
for p in ferry.1 ferry.conf.5; do
    warnings=$(ferry help --man $p | LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings=all -l - 2>&1 >/dev/null)
    eq "man renders $p without a warning" "$warnings" ""
done
ferry help --man ferry.7 >/dev/null 2>"$T_DIR/err"
eq "help --man refuses another page (exit 2)" "$?" 2
contains "... naming the pages it has" "$(cat "$T_DIR/err")" "ferry.1 or ferry.conf.5"
ferry help --completion fish >/dev/null 2>&1
eq "help --completion refuses another shell (exit 2)" "$?" 2

# --- a store with something of every kind to complete ------------------------------------
write_config
install_plugins
setup_local_machine Ops box1
ferry create storage Ops vault1 --vault "{\"provider\":\"local\",\"path\":\"$T_DIR/st\"}" >/dev/null
ferry create machine-group Ops all --members box1 >/dev/null
task=$(ferry create queue-item Ops box1 local --vault '{"function":"hello"}' --output json | jq -r '.data[0].taskId')

# --- bash ---------------------------------------------------------------------------------
bash_script=$FERRY_ROOT/$BUILD/completion/ferry
check "bash reads the completion script" bash -n "$bash_script"
# comp WORD...: what the completion offers for the last word, as bash-completion calls it.
cat >"$T_DIR/comp.sh" <<EOF
. "$bash_script"
comp() { COMP_WORDS=("\$@"); COMP_CWORD=\$((\$# - 1)); COMPREPLY=(); _ferry; echo "\${COMPREPLY[*]}"; }
EOF
bcomp() { PATH=$(dirname "$FERRY_BIN"):$PATH bash -c ". '$T_DIR/comp.sh'; comp \"\$@\"" comp "$@"; }
eq "complete -p names _ferry for ferry (bash -i)" \
    "$(bash --norc --noprofile -i -c ". '$bash_script'; complete -p ferry" 2>/dev/null)" "complete -F _ferry ferry"
verbs=$(bcomp ferry '')
contains "the first word: every verb of the command table" "$verbs" "create list queue rm dashboard init inspect update"
missing=
while read -r cmd; do
    bash -c ". '$bash_script'; _ferry_spec '$cmd'" || missing+="$cmd, "
done < <(help_commands)
eq "every command of ferry --help is in the completion's table" "$missing" ""
eq "a prefix" "$(bcomp ferry cr)" "create"
contains "the second word: the verb's nouns" "$(bcomp ferry create '')" "queue-item queue-items team region"
eq "TEAM: the store's teams" "$(bcomp ferry create queue-item '')" "Ops"
eq "MACHINE: that team's machines" "$(bcomp ferry create queue-item Ops '')" "box1"
eq "BRIDGE: the bridges" "$(bcomp ferry create queue-item Ops box1 '')" "local"
eq "[TEAM] NAME: teams and every machine" "$(bcomp ferry inspect machine '')" "Ops box1"
eq "storage NAME after TEAM" "$(bcomp ferry rm storage Ops '')" "vault1"
eq "machine-group NAME after TEAM" "$(bcomp ferry inspect machine-group Ops '')" "all"
eq "TASK: recent task ids" "$(bcomp ferry queue wait '')" "$task"
contains "FUNCTION: the plugins' functions" "$(bcomp ferry run '')" "hello log_message"
eq "options of the command and the global ones" "$(bcomp ferry queue wait --)" "--config --output --help --version --timeout --follow"
eq "an option's value from its alternatives" "$(bcomp ferry list queue --include-completed '')" "true false"
eq "--output's values" "$(bcomp ferry -o '')" "text json"
eq "--team's value: teams" "$(bcomp ferry list queue --team '')" "Ops"
eq "an option with a value is skipped when counting arguments" \
    "$(bcomp ferry create queue-item --priority 2 Ops '')" "box1"
touch "$T_DIR/vault-a.json"
eq "a PATH value: file names" "$(bcomp ferry create queue-item Ops box1 local --vault-file "$T_DIR/vault-")" "$T_DIR/vault-a.json"
eq "an unknown command offers nothing" "$(bcomp ferry frobnicate '')" ""
# A name written behind ferry's back (ferry refuses it) must not run in the shell: bash's
# compgen -W expands the words it offers.
sqlite3 "$T_DIR/ferry.db" "INSERT INTO teams VALUES ('\$(touch $T_DIR/pwned)', '{}', 1, 0, 0);
    INSERT INTO teams VALUES ('x\`touch $T_DIR/pwned2\`', '{}', 1, 0, 0)"
eq "a hostile name in the store is not offered" "$(bcomp ferry list team-storages '')" "Ops"
check "... and runs nothing" test ! -e "$T_DIR/pwned" -a ! -e "$T_DIR/pwned2"
# Names come from the store the line's --config names.
sed "s|$T_DIR/ferry.db|$T_DIR/other.db|" "$FERRY_CONFIG" >"$T_DIR/other.conf"
ferry --config "$T_DIR/other.conf" create team Elsewhere >/dev/null 2>&1
eq "--config on the line chooses the store names come from" \
    "$(bcomp ferry --config "$T_DIR/other.conf" list team-machines '')" "Elsewhere"
start=$(date +%s%N)
bcomp ferry create queue-item Ops '' >/dev/null
ms=$((($(date +%s%N) - start) / 1000000))
echo "# a completion that asks the store: $ms ms (a bash started, sourcing, ferry list)"
[[ $ms -lt 2000 ]] && pass "a completion from the store takes $ms ms (< 2 s)" || fail "completion is fast" "$ms ms"

# --- zsh ----------------------------------------------------------------------------------
zsh_script=$FERRY_ROOT/$BUILD/completion/_ferry
check "zsh reads the completion script (zsh -n)" zsh -n "$zsh_script"
contains "it is a #compdef ferry function" "$(head -1 "$zsh_script")" "#compdef ferry"
# zcomp WORD...: what _ferry hands compadd (or _files), with the completion system stubbed.
zcomp() {
    PATH=$(dirname "$FERRY_BIN"):$PATH zsh -f -c '
        compadd() { shift; print -r -- "$*"; }
        _files() { print -r -- "(files)"; }
        words=(ferry) CURRENT=2
        source "$1" >/dev/null; shift
        words=("$@") CURRENT=$#
        _ferry' zcomp "$zsh_script" "$@"
}
contains "zsh: verbs" "$(zcomp ferry '')" "create list queue rm"
eq "zsh: a team's machines" "$(zcomp ferry create queue-item Ops '')" "box1"
eq "zsh: option values" "$(zcomp ferry list queue --include-completed '')" "true false"
eq "zsh: a PATH value goes to _files" "$(zcomp ferry create queue-item Ops box1 local --vault-file '')" "(files)"

# --- make install / make uninstall ----------------------------------------------------------
stage=$T_DIR/stage
if make -s -C "$FERRY_ROOT" install PREFIX=/usr DESTDIR="$stage" BUILD="$BUILD" SAN="${SAN:-0}" >"$T_DIR/install.log" 2>&1; then
    pass "make install DESTDIR=… PREFIX=/usr"
else
    fail "make install DESTDIR=… PREFIX=/usr" "$(tail -20 "$T_DIR/install.log")"
fi
for f in usr/share/man/man1/ferry.1 usr/share/man/man5/ferry.conf.5 \
    usr/share/bash-completion/completions/ferry usr/share/zsh/vendor-completions/_ferry; do
    check "installed $f" test -s "$stage/$f"
done
contains "man finds the installed page by name" \
    "$(MANPATH=$stage/usr/share/man man -w ferry.conf 2>&1)" "$stage/usr/share/man/man5/ferry.conf.5"
eq "bash-completion loads the installed script on demand" \
    "$(XDG_DATA_DIRS=$stage/usr/share bash --norc --noprofile -i -c \
        '. /usr/share/bash-completion/bash_completion; _completion_loader ferry; complete -p ferry' 2>/dev/null)" \
    "complete -F _ferry ferry"
eq "zsh's compinit finds the installed _ferry" \
    "$(zsh -f -c "fpath=($stage/usr/share/zsh/vendor-completions \$fpath); autoload -U compinit; compinit -u -D; print -r -- \$_comps[ferry]" 2>&1)" "_ferry"
make -s -C "$FERRY_ROOT" uninstall PREFIX=/usr DESTDIR="$stage" BUILD="$BUILD" SAN="${SAN:-0}" >>"$T_DIR/install.log" 2>&1
eq "make uninstall leaves nothing but directories" "$(find "$stage" ! -type d)" ""
# An edited configuration is the operator's: it stays.
make -s -C "$FERRY_ROOT" install PREFIX=/usr DESTDIR="$stage" BUILD="$BUILD" SAN="${SAN:-0}" >>"$T_DIR/install.log" 2>&1
echo 'workers = { count = 2; };' >>"$stage/etc/ferry/ferry.conf"
out=$(make -s -C "$FERRY_ROOT" uninstall PREFIX=/usr DESTDIR="$stage" BUILD="$BUILD" SAN="${SAN:-0}" 2>&1)
eq "... but an edited ferry.conf, which it names" "$(cd "$stage" && find . ! -type d)" "./etc/ferry/ferry.conf"
contains "... saying so" "$out" "ferry.conf was edited; it stays"
t_done
