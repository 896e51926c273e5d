# ferry: one binary (build/ferry), plugins (build/plugins/*.so), tests and benchmarks.
# Targets: all (default), check, run, install, uninstall, deb, bench, docs, format, clean, fuzz.
# Variables: CC, PREFIX, DESTDIR, SAN=1 (ASan + UBSan, built under build/san),
#            FUZZ_SECONDS (per harness, for make fuzz), FUZZ_CC (clang).

PREFIX  ?= /usr/local
DESTDIR ?=
SAN     ?= 0

ifeq ($(SAN),1)
BUILD   ?= build/san
SANFLAGS := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
else
BUILD   ?= build
SANFLAGS :=
endif

# V=1 prints whole command lines.
ifeq ($(V),1)
Q :=
say = @true
else
Q := @
say = @printf '  %-6s %s\n' $(1) $(2)
endif

PKGS     := jansson libconfig libcurl sqlite3 libpq libzstd libcrypto
# libcurl, libpq and libcrypto are compiled against (their headers) but not linked: the host
# loads them on first use (host/base/lazy_lib.h), so commands that need none start without them.
LINK_PKGS := $(filter-out libcurl libpq libcrypto,$(PKGS))
# libmicrohttpd (ferry web) is loaded on first use too (host/web/lazy_mhd.c).
PKGS     += libmicrohttpd
WARN     := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
            -Wformat=2 -Wno-format-nonliteral -Wvla
BASEFLAGS := -std=gnu11 -O2 -g -D_GNU_SOURCE $(WARN) $(SANFLAGS)
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS))
PKG_LIBS   = $(shell pkg-config --libs $(filter-out $(STATIC_PKGS),$(LINK_PKGS)))
# SQLite and libconfig are linked from their archives when the system has them: Debian's
# libsqlite3.so is built BIND_NOW, so every start of ferry resolved its 1,238 PLT slots, a
# quarter of a create queue-item's instructions. jansson stays shared: plugins use it too,
# and a json_t must meet one copy of the library.
STATIC_PKGS := $(foreach p,sqlite3 libconfig,$(if $(filter /%,$(shell $(CC) \
                 -print-file-name=lib$(patsubst lib%,%,$(p)).a)),$(p)))
comma := ,
STATIC_LIBS = $(if $(STATIC_PKGS),-Wl$(comma)-Bstatic $(shell pkg-config --libs $(STATIC_PKGS)) \
                 -Wl$(comma)-Bdynamic)
# host/ is split into folders by concern (docs/architecture.md); every folder is on the
# include path so a header is named by its file name alone.
HOST_DIRS := host $(patsubst %/,%,$(sort $(dir $(wildcard host/*/*.c host/*/*.h))))
HOST_CFLAGS  = $(BASEFLAGS) -Isdk/include $(HOST_DIRS:%=-I%) $(PKG_CFLAGS) $(CFLAGS)
# Relative relocations packed (DT_RELR, binutils 2.38 and glibc 2.36 on): the loader reads
# 0.9 KiB of them instead of 85 KiB at every start of ferry, 10k fewer instructions and one
# page fault fewer per command. Taken only where the linker makes it without a warning.
RELR_LDFLAGS := $(shell printf 'int main(void){return 0;}' | $(CC) -x c - -o /dev/null \
                  -Wl,--fatal-warnings -Wl,-z,pack-relative-relocs 2>/dev/null \
                  && echo -Wl$(comma)-z$(comma)pack-relative-relocs)
HOST_LDFLAGS = $(SANFLAGS) $(RELR_LDFLAGS) $(LDFLAGS)
# No -lm: libm is loaded on first use too (host/base/lazy_m.c); a create calls none of it.
# Its wrappers are asked for by name, so that a link of libferry.a before SQLite's archive
# (the tests, the benches) takes them from libferry.a, as ferry does from lazy_m.o.
HOST_LIBS    = $(PKG_LIBS) $(STATIC_LIBS) -ldl -lpthread -Wl,--require-defined=lazy_m_lib
PLUGIN_CFLAGS = $(BASEFLAGS) -fPIC -fvisibility=hidden -Isdk/include \
                $(shell pkg-config --cflags jansson) $(CFLAGS)
PLUGIN_LIBS   = $(shell pkg-config --libs jansson)

MAN_PAGES := $(BUILD)/man/ferry.1 $(BUILD)/man/ferry.conf.5
COMPLETIONS := $(BUILD)/completion/ferry $(BUILD)/completion/_ferry
HOST_SRC  := $(sort $(wildcard host/*.c host/*/*.c))
HOST_OBJ  := $(HOST_SRC:%.c=$(BUILD)/obj/%.o)
# The dashboard's files as a generated table (rule below, after the object rule).
HOST_OBJ  += $(BUILD)/obj/web_assets.o
LIB_OBJ   := $(filter-out $(BUILD)/obj/host/main.o,$(HOST_OBJ))
PLUGINS   := $(notdir $(patsubst %/,%,$(sort $(dir $(wildcard plugins/*/*.c)))))
PLUGIN_SO := $(PLUGINS:%=$(BUILD)/plugins/%.so)
UNIT_SRC  := $(sort $(wildcard tests/unit/test_*.c))
UNIT_BIN  := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
DEPS_OK   := build/.deps-build
DEPS_TEST_OK := build/.deps-test
# libFuzzer harnesses: tests/fuzz/fuzz_NAME.c, seeds in tests/fuzz/corpus/NAME/.
FUZZ_SRC  := $(sort $(wildcard tests/fuzz/fuzz_*.c))
FUZZ_NAMES := $(FUZZ_SRC:tests/fuzz/fuzz_%.c=%)
REPLAY_BIN := $(FUZZ_NAMES:%=$(BUILD)/tests/fuzz_%)
FUZZ_BIN  := $(FUZZ_NAMES:%=build/fuzz/fuzz_%)

.PHONY: all check run install bench docs docs-check format clean deps deps-test fuzz deps-inputs
all: $(BUILD)/ferry $(PLUGIN_SO) $(MAN_PAGES) $(COMPLETIONS)

# Installs missing Debian packages (as root) or says which ones to install, once per tree.
$(DEPS_OK): scripts/deps.sh
	@scripts/deps.sh build
	@mkdir -p $(@D) && touch $@
deps: $(DEPS_OK)
# What the tests need is installed before anything of theirs is compiled (cmocka.h).
$(DEPS_TEST_OK): scripts/deps.sh | $(DEPS_OK)
	@scripts/deps.sh test
	@touch $@
deps-test: $(DEPS_TEST_OK)

$(BUILD)/obj/%.o: %.c | $(DEPS_OK)
	@mkdir -p $(@D)
	$(call say,CC,$<)
	$(Q)$(CC) $(HOST_CFLAGS) -MMD -MP -c $< -o $@

# The web dashboard: every file of host/web/assets/ becomes a byte array of the table that
# host/web/assets.h declares (scripts/web_assets.sh), so ferry serves it with no file beside it.
# The folder is a prerequisite too, so adding or removing a file regenerates the table.
WEB_ASSETS := $(sort $(wildcard host/web/assets/*))
$(BUILD)/gen/web_assets.c: scripts/web_assets.sh $(WEB_ASSETS) host/web/assets | $(DEPS_OK)
	@mkdir -p $(@D)
	$(call say,GEN,$@)
	$(Q)scripts/web_assets.sh $(WEB_ASSETS) >$@.tmp && mv $@.tmp $@
$(BUILD)/obj/web_assets.o: $(BUILD)/gen/web_assets.c
	@mkdir -p $(@D)
	$(call say,CC,$<)
	$(Q)$(CC) $(HOST_CFLAGS) -c $< -o $@

$(BUILD)/ferry: $(HOST_OBJ)
	$(call say,LINK,$@)
	$(Q)$(CC) $(HOST_LDFLAGS) -o $@ $^ $(HOST_LIBS)

# Man pages and shell completion, written by the ferry just built from its command and
# configuration tables (host/cli/cli_man.c, cli_complete.c): ferry help --man PAGE,
# ferry help --completion SHELL.
$(BUILD)/man/%: $(BUILD)/ferry
	@mkdir -p $(@D)
	$(call say,GEN,$@)
	$(Q)$(BUILD)/ferry help --man $* >$@.tmp && mv $@.tmp $@
$(BUILD)/completion/ferry $(BUILD)/completion/_ferry: $(BUILD)/completion/%: $(BUILD)/ferry
	@mkdir -p $(@D)
	$(call say,GEN,$@)
	$(Q)$(BUILD)/ferry help --completion $(if $(filter _%,$*),zsh,bash) >$@.tmp && mv $@.tmp $@

$(BUILD)/libferry.a: $(LIB_OBJ)
	@rm -f $@
	$(Q)$(AR) rcs $@ $^

# One plugin per folder; all its .c files make one .so. A plugin that needs more libraries
# than jansson lists their pkg-config names in plugins/NAME/pkg-config (one line).
plugin_pkgs = $(shell cat plugins/$(1)/pkg-config 2>/dev/null)
.SECONDEXPANSION:
$(BUILD)/plugins/%.so: $$(wildcard plugins/%/*.c) $$(wildcard plugins/%/*.h) $$(wildcard plugins/%/pkg-config) sdk/include/ferry/plugin.h | $(DEPS_OK)
	@mkdir -p $(@D)
	$(call say,PLUGIN,$@)
	$(Q)$(CC) $(PLUGIN_CFLAGS) $(if $(call plugin_pkgs,$*),$(shell pkg-config --cflags $(call plugin_pkgs,$*))) \
	    -shared -o $@ $(filter %.c,$^) $(SANFLAGS) $(PLUGIN_LIBS) \
	    $(if $(call plugin_pkgs,$*),$(shell pkg-config --libs $(call plugin_pkgs,$*)))

# Unit tests that compile the repo plugin's sources in need its extra libraries too.
REPO_TEST_LIBS = $(shell pkg-config --libs $(call plugin_pkgs,repo))
$(BUILD)/tests/test_xfer: TEST_LIBS = $(REPO_TEST_LIBS)
$(filter $(BUILD)/tests/test_repo_%,$(UNIT_BIN)): TEST_LIBS = $(REPO_TEST_LIBS)
# Unit tests named test_repo_* (and test_xfer) compile the repo plugin's sources in.
$(filter $(BUILD)/tests/test_repo_% $(BUILD)/tests/test_xfer,$(UNIT_BIN)): $(wildcard plugins/repo/*.c plugins/repo/*.h) $(wildcard tests/unit/*.h)
# The store suites share tests/unit/store_suite.h.
$(BUILD)/tests/test_store $(BUILD)/tests/test_people: tests/unit/store_suite.h
$(BUILD)/tests/test_%: tests/unit/test_%.c $(BUILD)/libferry.a | $(DEPS_TEST_OK)
	@mkdir -p $(@D)
	$(call say,TEST,$@)
	$(Q)$(CC) $(HOST_CFLAGS) -o $@ $< $(BUILD)/libferry.a $(HOST_LDFLAGS) $(HOST_LIBS) $(TEST_LIBS) -lcmocka

# Fuzz harnesses for make check: each with tests/fuzz/replay.c (no libFuzzer), under ASan and
# UBSan whatever SAN says, so a committed seed that once crashed fails the check again. The
# harnesses include the sources they test; libferry.a supplies the rest of the host.
REPLAY_SAN := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_CFLAGS = $(filter-out $(SANFLAGS),$(HOST_CFLAGS)) $(shell pkg-config --cflags $(call plugin_pkgs,repo))
FUZZ_LIBS = $(BUILD)/libferry.a $(HOST_LIBS) $(REPO_TEST_LIBS)
$(BUILD)/obj/fuzz/%.o: tests/fuzz/%.c | $(DEPS_TEST_OK)
	@mkdir -p $(@D)
	$(call say,CC,$<)
	$(Q)$(CC) $(FUZZ_CFLAGS) $(REPLAY_SAN) -MMD -MP -c $< -o $@
$(BUILD)/tests/fuzz_%: $(BUILD)/obj/fuzz/fuzz_%.o $(BUILD)/obj/fuzz/replay.o $(BUILD)/libferry.a
	@mkdir -p $(@D)
	$(call say,LINK,$@)
	$(Q)$(CC) $(REPLAY_SAN) -o $@ $(filter %.o,$^) $(LDFLAGS) $(FUZZ_LIBS)

# make fuzz: each harness under libFuzzer for FUZZ_SECONDS (new inputs go to
# build/fuzz/corpus/NAME, crashes to build/fuzz/NAME-crash-*). FUZZ=NAME runs one.
.PRECIOUS: $(BUILD)/obj/fuzz/%.o build/fuzz/obj/%.o
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
build/fuzz/obj/%.o: tests/fuzz/%.c | $(DEPS_TEST_OK)
	@mkdir -p $(@D)
	$(call say,CC,$<)
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link,address,undefined \
	    -fno-sanitize-recover=undefined -fno-omit-frame-pointer -MMD -MP -c $< -o $@
build/fuzz/fuzz_%: build/fuzz/obj/fuzz_%.o build/libferry.a
	$(call say,LINK,$@)
	$(Q)$(FUZZ_CC) -fsanitize=fuzzer,address,undefined -o $@ $< $(LDFLAGS) \
	    build/libferry.a $(HOST_LIBS) $(REPO_TEST_LIBS)
ifneq ($(BUILD),build)
build/libferry.a: FORCE
	$(Q)$(MAKE) --no-print-directory SAN=0 BUILD=build build/libferry.a
FORCE:
endif
fuzz: $(if $(FUZZ),build/fuzz/fuzz_$(FUZZ),$(FUZZ_BIN))
	@FUZZ_SECONDS=$(FUZZ_SECONDS) tests/fuzz/run.sh $(FUZZ)

# make deps-inputs: what the build, the unit tests and the fuzz harnesses use from the
# system, for scripts/deps-check.sh (tests/e2e/deps_listed.sh): every header the compiler
# actually includes (-M, with each file's own flags), every pkg-config module and -l
# library, and the sanitizer and libFuzzer runtimes.
ALL_PLUGIN_PKGS = $(sort jansson $(foreach p,$(PLUGINS),$(call plugin_pkgs,$(p))))
deps-inputs:
	@for f in $(HOST_SRC) $(UNIT_SRC) $(FUZZ_SRC) tests/fuzz/replay.c tests/bench/bench_queue.c \
	    $(wildcard tests/helpers/*.c); do \
	    $(CC) $(FUZZ_CFLAGS) -M $$f || exit 1; done | tr ' \\' '\n\n' | grep '^/' | sort -u | sed 's/^/header /'
	@for f in $(wildcard plugins/*/*.c tests/fixtures/*.c sdk/examples/*/*.c); do \
	    $(CC) $(PLUGIN_CFLAGS) $(shell pkg-config --cflags $(ALL_PLUGIN_PKGS)) -M $$f || exit 1; \
	    done | tr ' \\' '\n\n' | grep '^/' | sort -u | sed 's/^/header /'
	@printf 'pkg %s\n' $(sort $(PKGS) $(ALL_PLUGIN_PKGS))
	@printf 'lib %s\n' $(sort $(patsubst -l%,%,$(filter -l%,$(HOST_LIBS) $(REPO_TEST_LIBS) -lcmocka)))
	@for f in "$$($(CC) -print-file-name=libasan.so)" "$$($(CC) -print-file-name=libubsan.so)" \
	    "$$($(FUZZ_CC) -print-runtime-dir)/libclang_rt.fuzzer-$$(uname -m).a" \
	    "$$($(FUZZ_CC) -print-runtime-dir)/libclang_rt.asan-$$(uname -m).a"; do \
	    case $$f in /*) echo "file $$f" ;; esac; done

check: $(DEPS_TEST_OK) all $(UNIT_BIN) $(REPLAY_BIN)
	@BUILD=$(BUILD) SAN=$(SAN) CC="$(CC)" tests/run.sh

run: all
	@scripts/run.sh $(BUILD)

$(BUILD)/tests/bench_queue: tests/bench/bench_queue.c $(BUILD)/libferry.a
	@mkdir -p $(@D)
	$(call say,BENCH,$@)
	$(Q)$(CC) $(HOST_CFLAGS) -o $@ $< $(BUILD)/libferry.a $(HOST_LDFLAGS) $(HOST_LIBS)

# BENCH_ONLY="drain latency" (or "queue", …) runs only those sections: docs/benchmarks.md.
bench: all $(BUILD)/tests/bench_queue
	@scripts/deps.sh bench
	@BUILD=$(BUILD) BENCH_ONLY="$(BENCH_ONLY)" tests/bench/run.sh

docs: all
	$(BUILD)/ferry functions --markdown --config conf/ferry.conf > docs/functions.md
	$(BUILD)/ferry config reference > docs/configuration.md

format:
	clang-format -i host/*.c host/*/*.c host/*/*.h sdk/include/ferry/*.h plugins/*/*.c sdk/examples/*/*.c tests/unit/*.c

INSTALL_BIN     = $(DESTDIR)$(PREFIX)/bin
INSTALL_PLUGINS = $(DESTDIR)$(PREFIX)/lib/ferry/plugins
INSTALL_INCLUDE = $(DESTDIR)$(PREFIX)/include/ferry
INSTALL_PC      = $(DESTDIR)$(PREFIX)/lib/pkgconfig
INSTALL_CONF    = $(DESTDIR)$(if $(filter /usr,$(PREFIX)),,$(PREFIX))/etc/ferry
INSTALL_UNIT    = $(DESTDIR)$(PREFIX)/lib/systemd/system

install: all
	install -d $(INSTALL_BIN) $(INSTALL_PLUGINS) $(INSTALL_INCLUDE) $(INSTALL_PC) $(INSTALL_CONF) $(INSTALL_UNIT)
	install -m 0755 $(BUILD)/ferry $(INSTALL_BIN)/ferry
	install -m 0644 $(PLUGIN_SO) $(INSTALL_PLUGINS)/
	install -m 0644 sdk/include/ferry/*.h $(INSTALL_INCLUDE)/
	sed -e 's|@PREFIX@|$(PREFIX)|g' sdk/ferry-plugin.pc.in > $(INSTALL_PC)/ferry-plugin.pc
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@CONFDIR@|$(patsubst $(DESTDIR)%,%,$(INSTALL_CONF))|g' \
	    dist/ferry.conf.in > $(INSTALL_CONF)/ferry.conf.default
	# The config may hold secrets (smtp.password): 0640, readable by the ferry group only.
	test -e $(INSTALL_CONF)/ferry.conf || install -m 0640 $(INSTALL_CONF)/ferry.conf.default $(INSTALL_CONF)/ferry.conf
	if [ -z "$(DESTDIR)" ] && getent group ferry >/dev/null; then chgrp ferry $(INSTALL_CONF)/ferry.conf; fi
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@CONFDIR@|$(patsubst $(DESTDIR)%,%,$(INSTALL_CONF))|g' \
	    dist/ferry.service.in > $(INSTALL_UNIT)/ferry.service
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@CONFDIR@|$(patsubst $(DESTDIR)%,%,$(INSTALL_CONF))|g' \
	    dist/ferry-web.service.in > $(INSTALL_UNIT)/ferry-web.service
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@CONFDIR@|$(patsubst $(DESTDIR)%,%,$(INSTALL_CONF))|g' \
	    dist/ferry-priv.service.in > $(INSTALL_UNIT)/ferry-priv.service
	install -m 0644 dist/ferry-priv.socket $(INSTALL_UNIT)/ferry-priv.socket
	sed -e 's|@PREFIX@|$(PREFIX)|g' dist/ferry-priv.conf.in > $(INSTALL_CONF)/priv.conf.default
	test -e $(INSTALL_CONF)/priv.conf || install -m 0644 $(INSTALL_CONF)/priv.conf.default $(INSTALL_CONF)/priv.conf

# Man pages where man finds them, completion where bash-completion and zsh look (the
# places Debian uses); uninstall removes what install put (docs/operations.md, "Installing").
INSTALL_MAN     = $(DESTDIR)$(PREFIX)/share/man
INSTALL_BASHCOMP = $(DESTDIR)$(PREFIX)/share/bash-completion/completions
INSTALL_ZSHCOMP = $(DESTDIR)$(PREFIX)/share/zsh/vendor-completions
.PHONY: install-man uninstall
install: install-man
install-man: $(MAN_PAGES) $(COMPLETIONS)
	install -d $(INSTALL_MAN)/man1 $(INSTALL_MAN)/man5 $(INSTALL_BASHCOMP) $(INSTALL_ZSHCOMP)
	install -m 0644 $(BUILD)/man/ferry.1 $(INSTALL_MAN)/man1/ferry.1
	install -m 0644 $(BUILD)/man/ferry.conf.5 $(INSTALL_MAN)/man5/ferry.conf.5
	install -m 0644 $(BUILD)/completion/ferry $(INSTALL_BASHCOMP)/ferry
	install -m 0644 $(BUILD)/completion/_ferry $(INSTALL_ZSHCOMP)/_ferry

# The configuration goes only when it is still the default install wrote; an edited one
# stays, and so does every directory something else still uses.
UNINSTALL_UNITS = $(patsubst dist/%.in,$(INSTALL_UNIT)/%,$(wildcard dist/*.service.in dist/*.socket.in dist/*.timer.in)) \
    $(patsubst dist/%,$(INSTALL_UNIT)/%,$(wildcard dist/*.socket))
uninstall:
	rm -f $(INSTALL_BIN)/ferry $(PLUGINS:%=$(INSTALL_PLUGINS)/%.so) \
	    $(patsubst sdk/include/ferry/%,$(INSTALL_INCLUDE)/%,$(wildcard sdk/include/ferry/*.h)) \
	    $(INSTALL_PC)/ferry-plugin.pc $(UNINSTALL_UNITS) \
	    $(INSTALL_MAN)/man1/ferry.1 $(INSTALL_MAN)/man5/ferry.conf.5 \
	    $(INSTALL_BASHCOMP)/ferry $(INSTALL_ZSHCOMP)/_ferry
	for c in ferry.conf priv.conf; do \
	    if cmp -s $(INSTALL_CONF)/$$c $(INSTALL_CONF)/$$c.default; then \
	        rm -f $(INSTALL_CONF)/$$c; \
	    elif [ -e $(INSTALL_CONF)/$$c ]; then \
	        echo "uninstall: $(INSTALL_CONF)/$$c was edited; it stays"; fi; \
	    rm -f $(INSTALL_CONF)/$$c.default; \
	done
	rmdir $(INSTALL_PLUGINS) $(DESTDIR)$(PREFIX)/lib/ferry $(INSTALL_INCLUDE) $(INSTALL_CONF) 2>/dev/null || true

# make deb: the Debian packages (debian/) from scratch with Debian's build flags, built in a
# copy of the sources under build/deb/ so the tree stays clean, then checked with lintian.
DEB_SOURCES := Makefile README.md conf debian dist docs host plugins scripts sdk
DEB_BUILD_OPTIONS ?= parallel=2
.PHONY: deb
deb:
	rm -rf build/deb && mkdir -p build/deb/ferry
	cp -a $(DEB_SOURCES) build/deb/ferry/
	cd build/deb/ferry && DEB_BUILD_OPTIONS="$(DEB_BUILD_OPTIONS)" dpkg-buildpackage -us -uc -b
	lintian --fail-on error build/deb/*.changes

clean:
	rm -rf build

-include $(HOST_OBJ:.o=.d) $(wildcard $(BUILD)/obj/fuzz/*.d build/fuzz/obj/*.d)
