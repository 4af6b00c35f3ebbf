# hsmesh - build, test, demo.
#   make        install missing Debian packages (when root) and build build/hsmesh
#   make check  the whole test suite (also under ASan+UBSan); ends "N passed, N failed"
#   make demo   the main job on this machine
#   make bench  hsmesh against HAProxy, stunnel and nghttpx (QUICK=1: a 2-minute smoke run)

CC      ?= gcc
FUZZCC  ?= clang
BUILD   ?= build

# Debian packages the benchmarks add (only `make bench` installs them).
BENCH_PKGS = haproxy stunnel4 gnuplot-nox wrk valgrind nghttp2-proxy strace

# Debian packages the build, the tests and the demo need.
DEB_PKGS = gcc make pkg-config libssl-dev openssl libyaml-dev libsqlite3-dev \
	libcmocka-dev libp11-kit-dev softhsm2 opensc clang libclang-rt-14-dev \
	procps gdb sqlite3 curl libjson-c-dev libseccomp-dev wrk libnghttp2-dev nghttp2-client \
	swtpm swtpm-tools tpm2-abrmd libtss2-tcti-tabrmd0 libtpm2-pkcs11-1 libtpm2-pkcs11-tools tpm2-tools dbus \
	postgresql-15 libpq-dev

# libpq's headers (Debian: /usr/include/postgresql), also before pkg-config can say.
# hsmesh loads libpq itself when a ledger is on PostgreSQL (src/lib/ledger_pg.c):
# only the ledger test, which talks to its server directly too, links it.
PQ_CFLAGS := $(shell pkg-config --cflags libpq 2>/dev/null || echo -I/usr/include/postgresql)
$(BUILD)/tests/test_ledger $(BUILD)/asan/tests/test_ledger: LDLIBS += -lpq

WARN    = -Wall -Wextra -Werror -Wshadow -Wformat=2 -Wno-unused-parameter \
	  -Wstrict-prototypes -Wmissing-prototypes -Wvla
CPPFLAGS_ALL = -D_GNU_SOURCE -Isrc/lib -I/usr/include/p11-kit-1 $(PQ_CFLAGS) $(CPPFLAGS)
CFLAGS_ALL   = -std=c17 -O2 -g -fstack-protector-strong -D_FORTIFY_SOURCE=2 \
	       -fno-strict-aliasing $(WARN) $(CFLAGS)
SANFLAGS = -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
LDLIBS_ALL = -lssl -lcrypto -lnghttp2 -lyaml -lsqlite3 -ljson-c -lseccomp -lpthread -ldl -lm $(LDLIBS)

# src/lib: the library (unit-tested, fuzzed); src/*.c and the rooms of the
# bigger processes (src/<process>/*.c, e.g. src/proxy/) make the binary.
LIB_SRC  = $(sort $(wildcard src/lib/*.c))
MAIN_SRC = $(sort $(wildcard src/*.c) $(filter-out src/lib/%,$(wildcard src/*/*.c)))
HDRS     = $(wildcard src/lib/*.h) $(wildcard src/*.h) $(filter-out src/lib/%,$(wildcard src/*/*.h))
TEST_HDRS = $(wildcard tests/unit/*.h)
UNIT_SRC = $(sort $(wildcard tests/unit/test_*.c))
FUZZ_SRC = $(sort $(wildcard tests/fuzz/fuzz_*.c))
TOOL_SRC = $(sort $(wildcard tests/tools/*.c))

LIB_OBJ      = $(LIB_SRC:src/lib/%.c=$(BUILD)/obj/lib/%.o)
MAIN_OBJ     = $(MAIN_SRC:src/%.c=$(BUILD)/obj/%.o)
ASAN_LIB_OBJ = $(LIB_SRC:src/lib/%.c=$(BUILD)/asan/obj/lib/%.o)
ASAN_MAIN_OBJ= $(MAIN_SRC:src/%.c=$(BUILD)/asan/obj/%.o)
UNIT_BIN     = $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
ASAN_UNIT_BIN= $(UNIT_SRC:tests/unit/%.c=$(BUILD)/asan/tests/%)
FUZZ_BIN     = $(FUZZ_SRC:tests/fuzz/%.c=$(BUILD)/fuzz/%)
TOOL_BIN     = $(TOOL_SRC:tests/tools/%.c=$(BUILD)/tests/tools/%)

.PHONY: all deps check check-build demo bench fuzz clean format-check

all: deps $(BUILD)/hsmesh

# Install what is missing; as non-root, say what to install instead.
deps:
	@missing=""; for p in $(DEB_PKGS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing:$$missing"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing) >/dev/null || \
	      { echo "apt-get install failed for:$$missing" >&2; exit 1; }; \
	  else echo "missing Debian packages (run make as root, or install):$$missing" >&2; exit 1; fi; \
	fi

$(BUILD)/obj/%.o: src/%.c $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS_ALL) $(CFLAGS_ALL) -c -o $@ $<

$(BUILD)/asan/obj/%.o: src/%.c $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS_ALL) $(CFLAGS_ALL) -O1 $(SANFLAGS) -c -o $@ $<

$(BUILD)/libhsmesh.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/asan/libhsmesh.a: $(ASAN_LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/hsmesh: $(MAIN_OBJ) $(BUILD)/libhsmesh.a
	$(CC) $(CFLAGS_ALL) -o $@ $(MAIN_OBJ) $(BUILD)/libhsmesh.a $(LDLIBS_ALL)

$(BUILD)/asan/hsmesh: $(ASAN_MAIN_OBJ) $(BUILD)/asan/libhsmesh.a
	$(CC) $(CFLAGS_ALL) $(SANFLAGS) -o $@ $(ASAN_MAIN_OBJ) $(BUILD)/asan/libhsmesh.a $(LDLIBS_ALL)

$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/libhsmesh.a $(HDRS) $(TEST_HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS_ALL) $(CFLAGS_ALL) -o $@ $< $(BUILD)/libhsmesh.a -lcmocka $(LDLIBS_ALL)

$(BUILD)/asan/tests/%: tests/unit/%.c $(BUILD)/asan/libhsmesh.a $(HDRS) $(TEST_HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS_ALL) $(CFLAGS_ALL) -O1 $(SANFLAGS) -o $@ $< $(BUILD)/asan/libhsmesh.a -lcmocka $(LDLIBS_ALL)

# Test tools (fixture generators and test clients, never shipped): tests/tools/*.c
$(BUILD)/tests/tools/%: tests/tools/%.c $(BUILD)/libhsmesh.a $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS_ALL) $(CFLAGS_ALL) -o $@ $< $(BUILD)/libhsmesh.a $(LDLIBS_ALL)

# libFuzzer targets: clang, ASan+UBSan; the library is compiled once with
# coverage instrumentation and linked into every target.
FUZZ_LIB_OBJ = $(LIB_SRC:src/lib/%.c=$(BUILD)/fuzzobj/%.o)
.SECONDARY: $(FUZZ_LIB_OBJ)

$(BUILD)/fuzzobj/%.o: src/lib/%.c $(HDRS)
	@mkdir -p $(dir $@)
	$(FUZZCC) $(CPPFLAGS_ALL) -std=c17 -g -O1 -fsanitize=fuzzer-no-link,address,undefined -c -o $@ $<

$(BUILD)/fuzz/%: tests/fuzz/%.c $(FUZZ_LIB_OBJ) $(HDRS)
	@mkdir -p $(dir $@)
	$(FUZZCC) $(CPPFLAGS_ALL) -std=c17 -g -O1 -fsanitize=fuzzer,address,undefined \
	  -o $@ $< $(FUZZ_LIB_OBJ) $(LDLIBS_ALL)

check-build: all $(BUILD)/asan/hsmesh $(UNIT_BIN) $(ASAN_UNIT_BIN) $(FUZZ_BIN) $(TOOL_BIN) \
	$(BUILD)/bench/cmpload

check: check-build
	@tests/run.sh $(BUILD)

fuzz: $(FUZZ_BIN)

demo: all
	$(BUILD)/hsmesh demo

# bench/*.c: measuring programs linked with the library (bench/keypath.c), and
# LD_PRELOAD shims (bench/vgshim.c: the daemons under valgrind)
$(BUILD)/bench/%: bench/%.c $(BUILD)/libhsmesh.a $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS_ALL) $(CFLAGS_ALL) -o $@ $< $(BUILD)/libhsmesh.a $(LDLIBS_ALL)
# the memory floor of OpenSSL alone: linked with libssl and libcrypto only,
# shared (as hsmesh) and static (Debian's libssl.a and libcrypto.a, libc shared)
$(BUILD)/bench/sslfloor: SSLFLOOR_LIBS = -lssl -lcrypto
$(BUILD)/bench/sslfloor-static: SSLFLOOR_LIBS = -Wl,-Bstatic -lssl -lcrypto -Wl,-Bdynamic -lpthread -ldl
$(BUILD)/bench/sslfloor $(BUILD)/bench/sslfloor-static: bench/sslfloor.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -o $@ $< $(SSLFLOOR_LIBS)
# the memory floor of a keyholder: libcrypto and a PKCS#11 module with one
# logged-in session, nothing of hsmesh
$(BUILD)/bench/p11floor: bench/p11floor.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS_ALL) $(CFLAGS_ALL) -o $@ $< -lcrypto -ldl
$(BUILD)/bench/%.so: bench/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS_ALL) $(CFLAGS_ALL) -shared -fPIC -o $@ $< -ldl

bench: all $(BUILD)/bench/keypath $(BUILD)/bench/cmpload $(BUILD)/bench/sslfloor $(BUILD)/bench/sslfloor-static $(BUILD)/bench/vgshim.so $(BUILD)/bench/h2idle \
	    $(BUILD)/bench/idleconns $(BUILD)/bench/p11floor $(BUILD)/bench/kacount
	@missing=""; for p in $(BENCH_PKGS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing) >/dev/null || \
	      { echo "apt-get install failed for:$$missing" >&2; exit 1; }; \
	  else echo "missing Debian packages (run make bench as root, or install):$$missing" >&2; exit 1; fi; \
	fi
	QUICK=$(QUICK) bash bench/run.sh $(BUILD)

clean:
	rm -rf $(BUILD)
