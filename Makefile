# profiled -- plain Makefile. `make` builds bin/profiled and bin/profilectl;
# `make test` builds the sanitizer (ASan+UBSan) binaries and runs every test.
# `make deps` installs missing Debian packages; every build target depends on it.

CC      ?= cc
# Debian's interpreter (with python3-xxhash) runs the black-box tests and oracle.
PYTHON  ?= /usr/bin/python3
PKGS    := rdkafka rocksdb libcjson libxxhash libcrypto
WARN    := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wno-unused-parameter
CSTD    := -std=c11 -D_GNU_SOURCE
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
# Libraries per binary: each links only what its objects use.
CORE_LIBS   = $(shell pkg-config --libs rocksdb libcjson libxxhash libcrypto 2>/dev/null) -lpthread -lm
WORKER_LIBS = $(shell pkg-config --libs rdkafka 2>/dev/null) -lcivetweb $(CORE_LIBS)
CTL_LIBS    = $(shell pkg-config --libs rdkafka zlib 2>/dev/null) $(CORE_LIBS)
PKG_LIBS    = $(shell pkg-config --libs $(PKGS) zlib 2>/dev/null) -lcivetweb -lpthread -lm  # everything
OPT     ?= -O2
CFLAGS_REL := $(CSTD) $(OPT) -g $(WARN) -Iinclude
CFLAGS_SAN := $(CSTD) -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined \
              -fno-sanitize-recover=undefined $(WARN) -Iinclude
LDFLAGS_SAN := -fsanitize=address,undefined

# Explicit source lists. A new source goes into the list of the binary that
# uses it: CORE both binaries, WORKER bin/profiled only, CTL bin/profilectl
# only (test-unit and the bench programs link all three). bin/profiled must
# not contain CTL code: tests/bb/test_cli.py checks it with nm.
CORE_SRC   := src/util.c src/config.c src/schema.c src/event.c src/sketch.c src/catset.c src/profile.c src/bloom.c src/store.c src/store_write.c src/store_read.c src/handoff.c src/peer.c src/mac.c src/backup.c src/query.c src/score.c src/batch.c src/dedup.c src/rectime.c src/admit.c
WORKER_SRC := src/forward.c src/diskguard.c src/quarantine.c src/ingest.c src/partition.c src/offsets.c src/sidefx.c src/erase.c src/http_erase.c src/http_score.c src/committer.c src/dlq.c src/kafka.c src/tsoffset.c src/restore.c src/metrics.c src/http.c src/http_front.c src/members.c src/memrec.c src/backupd.c src/population.c
CTL_SRC    := src/ctl_broker.c src/ctl_produce.c src/gen.c src/ctl_dump.c src/ctl_consume.c src/ctl_backup.c src/ctl_export.c src/ctl_import.c
PROFILED_MAIN  := src/profiled.c
PROFILECTL_MAIN := src/profilectl.c
UNIT_SRC   := tests/unit/main.c tests/unit/test_util.c tests/unit/test_config.c \
              tests/unit/test_event.c tests/unit/test_event_corpus.c tests/unit/event_cjson.c tests/unit/test_profile.c tests/unit/test_bloom.c tests/unit/test_store.c tests/unit/test_handoff.c tests/unit/test_schema.c tests/unit/test_ingest.c tests/unit/test_batch.c tests/unit/test_dedup.c tests/unit/test_committer.c \
              tests/unit/test_http.c tests/unit/test_members.c tests/unit/test_peer.c tests/unit/loopback.c \
              tests/unit/test_query.c tests/unit/test_front.c tests/unit/test_metrics.c tests/unit/test_gen.c tests/unit/test_mac.c tests/unit/test_erase.c tests/unit/test_sidefx.c tests/unit/test_score.c tests/unit/test_tracks.c tests/unit/test_recent.c tests/unit/test_tsoffset.c
FUZZ_TARGETS := fuzz_event fuzz_event_diff fuzz_decode fuzz_rank

LIB_SRC := $(CORE_SRC) $(WORKER_SRC) $(CTL_SRC)
REL_OBJ := $(patsubst %.c,build/rel/%.o,$(LIB_SRC))
SAN_OBJ := $(patsubst %.c,build/san/%.o,$(LIB_SRC))
# The objects of each binary: $(call rel,SOURCES) / $(call san,SOURCES).
# Their links also depend on this Makefile, so a changed list relinks.
rel = $(patsubst %.c,build/rel/%.o,$(1))
san = $(patsubst %.c,build/san/%.o,$(1))
PROFILED_SRC   := $(PROFILED_MAIN) $(CORE_SRC) $(WORKER_SRC)
PROFILECTL_SRC := $(PROFILECTL_MAIN) $(CORE_SRC) $(CTL_SRC)
HDRS    := $(wildcard include/*.h) src/store_int.h src/ingest_int.h tests/unit/test.h tests/unit/event_cjson.h tests/unit/loopback.h

DEPS_STAMP := build/.deps-ok

.PHONY: all deps test unit bb fuzz bench bench-report bench-bins demo clean docs san chaos

all: bin/profiled bin/profilectl

deps: $(DEPS_STAMP)
$(DEPS_STAMP): deploy/install-deps.sh
	@sh deploy/install-deps.sh
	@mkdir -p build && touch $@

# V=1 shows full command lines.
ifeq ($(V),1)
Q :=
else
Q := @
endif

# Code that may run on civetweb's worker threads (Debian builds civetweb
# with 100 KiB thread stacks) keeps its stack frames small: a 64 KiB frame
# there jumped the guard page into a neighbour's memory (see backup.c).
$(call rel,$(CORE_SRC) $(WORKER_SRC)): CFLAGS += -Wframe-larger-than=16384

build/rel/%.o: %.c $(HDRS) | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	@[ "$(V)" = 1 ] || echo "  CC      $<"
	$(Q)$(CC) $(CFLAGS_REL) $(PKG_CFLAGS) $(CFLAGS) -c $< -o $@

build/san/%.o: %.c $(HDRS) | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	@[ "$(V)" = 1 ] || echo "  CC-SAN  $<"
	$(Q)$(CC) $(CFLAGS_SAN) $(PKG_CFLAGS) -c $< -o $@

bin/profiled: $(call rel,$(PROFILED_SRC)) Makefile
	@mkdir -p bin
	@echo "  LD      $@"
	$(Q)$(CC) -o $@ $(filter %.o,$^) $(LDFLAGS) $(WORKER_LIBS)

bin/profilectl: $(call rel,$(PROFILECTL_SRC)) Makefile
	@mkdir -p bin
	@echo "  LD      $@"
	$(Q)$(CC) -o $@ $(filter %.o,$^) $(LDFLAGS) $(CTL_LIBS)

# Sanitizer builds used by the test suite.
san: build/san/bin/profiled build/san/bin/profilectl build/san/bin/test-unit build/san/bench/bench_lat

build/san/bin/profiled: $(call san,$(PROFILED_SRC)) Makefile
	@mkdir -p $(dir $@)
	@echo "  LD      $@"
	$(Q)$(CC) $(LDFLAGS_SAN) -o $@ $(filter %.o,$^) $(WORKER_LIBS)

build/san/bin/profilectl: $(call san,$(PROFILECTL_SRC)) Makefile
	@mkdir -p $(dir $@)
	@echo "  LD      $@"
	$(Q)$(CC) $(LDFLAGS_SAN) -o $@ $(filter %.o,$^) $(CTL_LIBS)

build/san/bin/test-unit: $(patsubst %.c,build/san/%.o,$(UNIT_SRC)) $(SAN_OBJ)
	@mkdir -p $(dir $@)
	@echo "  LD      $@"
	$(Q)$(CC) $(LDFLAGS_SAN) -o $@ $^ $(PKG_LIBS)

# `make test`: unit tests, then black-box tests against the embedded broker.
test: san
	@$(PYTHON) tests/run.py

# `make unit T=name`: unit tests only, optionally filtered.
unit: build/san/bin/test-unit
	build/san/bin/test-unit $(T)

# Fuzzers (libFuzzer, clang). FUZZ_SECONDS bounds each target.
FUZZ_SECONDS ?= 60
FUZZ_CFLAGS := $(CSTD) -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined $(WARN) -Iinclude
FUZZ_LIB := src/util.c src/schema.c src/event.c src/sketch.c src/catset.c src/profile.c
# fuzz_event_diff also links the cJSON-based field extraction (the value
# oracle on documents the scanner accepts as JSON).
FUZZ_EXTRA_fuzz_event_diff := tests/unit/event_cjson.c
# fuzz_rank: the rank body parser and scoring (score.c, with query.c's range rules).
FUZZ_EXTRA_fuzz_rank := src/query.c src/score.c

build/fuzz/%: tests/fuzz/%.c $(FUZZ_LIB) tests/unit/event_cjson.c $(HDRS) | $(DEPS_STAMP)
	@mkdir -p build/fuzz
	clang $(FUZZ_CFLAGS) $(PKG_CFLAGS) -o $@ $< $(FUZZ_LIB) $(FUZZ_EXTRA_$*) $(PKG_LIBS)

fuzz: $(addprefix build/fuzz/,$(FUZZ_TARGETS))
	@for t in $(FUZZ_TARGETS); do \
	  mkdir -p build/fuzz/corpus-$$t; \
	  cp tests/fuzz/seeds/$$t/* build/fuzz/corpus-$$t/ 2>/dev/null; \
	  [ $$t != fuzz_event_diff ] || cp tests/fuzz/seeds/fuzz_event/* build/fuzz/corpus-$$t/; \
	  echo "fuzz: $$t for $(FUZZ_SECONDS)s"; \
	  dict=; [ ! -f tests/fuzz/$$t.dict ] || dict=-dict=tests/fuzz/$$t.dict; \
	  build/fuzz/$$t -max_total_time=$(FUZZ_SECONDS) -max_len=4096 -print_final_stats=1 $$dict \
	     build/fuzz/corpus-$$t >build/fuzz/$$t.log 2>&1 || { tail -50 build/fuzz/$$t.log; exit 1; }; \
	  grep -E 'stat::number_of_executed_units|Done' build/fuzz/$$t.log | tail -2; \
	done

docs: bin/profiled
	bin/profiled --print-config-markdown > docs/configuration.md

# `make chaos`: 100+ random SIGKILLs and broker faults against a 3-worker
# cluster with erasures going on; every user at every worker, the stores, the
# DLQ, the population prior and rankings against the oracles (not in `make test`;
# bounded to 20 minutes; docs/RELIABILITY.md). CHAOS_ARGS passes options.
chaos: all
	@$(PYTHON) tests/chaos.py $(CHAOS_ARGS)

bench: all
	@sh bench/run.sh

# Only the report (docs/bench-results.md, plots) from an existing results file.
bench-report:
	@$(PYTHON) bench/report.py

demo: all
	@sh deploy/demo.sh

clean:
	rm -rf build bin

# bench -- `make bench` (above) runs bench/run.sh; these are its C programs,
# built with the release flags and linked against the release objects.
BENCH_BINS := build/bench/bench_process build/bench/bench_consume build/bench/bench_redis build/bench/bench_tracks build/bench/bench_rank build/bench/bench_lat

# bench_lat (the latency client) also under the sanitizers: bench/test_bench.py
# runs it against a small server during `make test` (tests/run.py).
build/san/bench/bench_lat: bench/bench_lat.c $(SAN_OBJ) $(HDRS) | $(DEPS_STAMP)
	@mkdir -p build/san/bench
	$(CC) $(CFLAGS_SAN) $(PKG_CFLAGS) $(CFLAGS) -o $@ $< $(SAN_OBJ) $(LDFLAGS_SAN) $(PKG_LIBS)

build/bench/%: bench/%.c $(REL_OBJ) $(HDRS) | $(DEPS_STAMP)
	@mkdir -p build/bench
	$(CC) $(CFLAGS_REL) $(PKG_CFLAGS) $(CFLAGS) -o $@ $< $(REL_OBJ) $(LDFLAGS) $(PKG_LIBS)

bench-bins: $(BENCH_BINS)
