#!/usr/bin/env bash
# The SDK builds plugins the way plugin.h and docs/sdk.md say: the build line in plugin.h's
# comment links jansson (sources before libraries, checked with --as-needed), and the
# greeter example compiles clean with -Wpedantic as C and, with g++ and clang++, as C++20,
# and the C++ build loads and runs.
. "$(dirname "$0")/../lib.sh"

write_config 'plugin = { greeter = { greeting = "Hey"; }; };'
install_plugins
P=$T_DIR/plugins
# A pkg-config file like the installed one, pointing at the source tree's headers.
sed "s|@PREFIX@|$FERRY_ROOT/sdk|" "$FERRY_ROOT/sdk/ferry-plugin.pc.in" >"$T_DIR/ferry-plugin.pc"
export PKG_CONFIG_PATH=$T_DIR
greeter=$FERRY_ROOT/sdk/examples/greeter/greeter.c

# The build line of plugin.h's comment, verbatim but for the file names. --as-needed (the
# default on several distributions) drops a library named before the objects that need it.
line=$(sed -n '/^ \*     cc /,/myplugin.c/p' "$FERRY_ROOT/sdk/include/ferry/plugin.h" |
    sed 's/^ \*     //; s/\\$//' | tr '\n' ' ')
contains "plugin.h has a build line" "$line" "pkg-config"
line=${line//myplugin.so/$T_DIR/line.so}
line=${line//myplugin.c/$greeter}
line=${line/cc /cc -Wl,--as-needed }
if (cd "$T_DIR" && eval "$line") >"$T_DIR/line.log" 2>&1; then
    pass "plugin.h's build line builds the greeter"
else
    fail "plugin.h's build line builds the greeter" "$line" "$(cat "$T_DIR/line.log")"
fi
contains "and links jansson even with --as-needed (sources before libraries)" \
    "$(readelf -d "$T_DIR/line.so" 2>&1)" "libjansson"
contains "docs/sdk.md's build line puts the libraries last too" \
    "$(grep -A1 'pkg-config --cflags ferry-plugin) -o greeter.so greeter.c' "$FERRY_ROOT/docs/sdk.md")" '$(pkg-config --libs ferry-plugin)'

strict=(-Wall -Wextra -Wpedantic -Werror)
build() { # build NAME COMPILER [FLAGS...]: the greeter as NAME.so, pkg-config flags as documented
    local name=$1 compiler=$2; shift 2
    if ! command -v "$compiler" >/dev/null; then
        fail "$compiler is installed (scripts/deps.sh test)"
        return
    fi
    # shellcheck disable=SC2046
    if "$compiler" "$@" "${strict[@]}" $(pkg-config --cflags ferry-plugin) -o "$T_DIR/$name.so" \
        "$greeter" $(pkg-config --libs ferry-plugin) >"$T_DIR/$name.log" 2>&1; then
        pass "the greeter builds: $compiler $* ${strict[*]}"
    else
        fail "the greeter builds: $compiler $* ${strict[*]}" "$(head -20 "$T_DIR/$name.log")"
    fi
}
build c99 gcc -std=c99
build c11 clang -std=c11
build cxx g++ -x c++ -std=c++20
build clangxx clang++ -x c++ -std=c++20

# The C++ build is a working plugin.
cp "$T_DIR/cxx.so" "$P/greeter.so" && chmod 644 "$P/greeter.so"
eq "the C++ greeter loads" "$(ferry plugins --output json | jq -r '.data[] | select(.file=="greeter.so") | "\(.loaded) \(.abi)"')" "true 1.2"
out=$(ferry run greet --vault '{"who":"C++","times":2}' --output json 2>"$T_DIR/run.err")
eq "the C++ greeter runs" "$(jq -r '.data.result.greetings | join("|")' <<<"$out")" "Hey, C++!|Hey, C++!"
t_done
