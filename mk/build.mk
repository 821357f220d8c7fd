# Source discovery: one module a file; every directory's *.c is picked up, so a
# new module needs no Makefile edit. main.c of each program stays out of the
# archives that unit tests link.
LIB_SRCS   := $(wildcard lib/src/*.c)
AGENT_SRCS := $(filter-out node-agent/src/main.c,$(wildcard node-agent/src/*.c))
INIT_SRCS  := $(filter-out node-agent/init/main.c,$(wildcard node-agent/init/*.c))
CLI_SRCS   := $(filter-out cli/src/main.c,$(wildcard cli/src/*.c))
OP_SRCS    := $(filter-out operator/src/main.c,$(wildcard operator/src/*.c))
GW_SRCS    := $(wildcard gateway/src/*.c)
UNIT_SRCS  := $(wildcard tests/unit/test_*.c)

ALL_C_SOURCES := $(LIB_SRCS) $(wildcard node-agent/src/*.c node-agent/init/*.c cli/src/*.c) \
                 $(UNIT_SRCS) $(wildcard tests/fuzz/*.c operator/src/*.c) $(GW_SRCS)
ALL_HEADERS   := $(wildcard lib/include/sandpit/*.h node-agent/src/*.h node-agent/init/*.h \
                   cli/src/*.h operator/src/*.h tests/unit/*.h gateway/src/*.h)

objs = $(patsubst %.c,$(OBJ)/%.o,$(1))

$(OBJ)/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	@$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/libsandpit.a: $(call objs,$(LIB_SRCS))
$(BUILD)/libagent.a: $(call objs,$(AGENT_SRCS))
$(BUILD)/libinit.a: $(call objs,$(INIT_SRCS))
$(BUILD)/libcli.a: $(call objs,$(CLI_SRCS))
$(BUILD)/liboperator.a: $(call objs,$(OP_SRCS))
$(BUILD)/libgateway.a: $(call objs,$(GW_SRCS))
$(BUILD)/%.a:
	@mkdir -p $(dir $@)
	@rm -f $@
	@ar rcs $@ $^

ARCHIVES := $(BUILD)/libagent.a $(BUILD)/libinit.a $(BUILD)/libcli.a $(BUILD)/liboperator.a \
            $(BUILD)/libgateway.a $(BUILD)/libsandpit.a

$(BIN)/sandpit-agent: $(OBJ)/node-agent/src/main.o $(BUILD)/libagent.a $(BUILD)/libgateway.a \
                     $(BUILD)/libsandpit.a
	@mkdir -p $(dir $@)
	@echo "  LD      $@"
	@$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

$(BIN)/sandpit: $(OBJ)/cli/src/main.o $(BUILD)/libcli.a $(BUILD)/libgateway.a $(BUILD)/libsandpit.a
	@mkdir -p $(dir $@)
	@echo "  LD      $@"
	@$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

$(BIN)/sandpit-operator: $(OBJ)/operator/src/main.o $(BUILD)/liboperator.a $(BUILD)/libgateway.a \
                        $(BUILD)/libsandpit.a
	@mkdir -p $(dir $@)
	@echo "  LD      $@"
	@$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

# sandpit-init runs inside every sandbox whatever its root filesystem holds, so
# it is static, libc only, and never sanitized.
INIT_OBJ := build/init-obj
INIT_ALL := node-agent/init/main.c $(INIT_SRCS) node-agent/src/initproto.c
$(INIT_OBJ)/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "  CC      $< (init)"
	@$(CC) $(BASE_CFLAGS) -O2 -c $< -o $@

$(BIN)/sandpit-init: $(patsubst %.c,$(INIT_OBJ)/%.o,$(INIT_ALL))
	@mkdir -p $(dir $@)
	@echo "  LD      $@ (static)"
	@$(CC) -static -O2 -o $@ $^

# Unit tests: tests/unit/test_X.c links the archives; extra linker flags such as
# -Wl,--wrap=symbol go in tests/unit/test_X.ldflags.
UNIT_BINS := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRCS))
$(BUILD)/tests/%: $(OBJ)/tests/unit/%.o $(ARCHIVES)
	@mkdir -p $(dir $@)
	@echo "  LD      $@"
	@$(CC) $(LDFLAGS) -o $@ $< $(shell cat tests/unit/$*.ldflags 2>/dev/null) \
		-Wl,--start-group $(ARCHIVES) -Wl,--end-group $(LIBS) $(CMOCKA_LIBS)

.PHONY: unit-bins
unit-bins: $(UNIT_BINS)

-include $(shell find build -name '*.d' -type f 2>/dev/null)

# libFuzzer harnesses: tests/fuzz/fuzz_X.c with the sources listed in
# tests/fuzz/fuzz_X.sources, built with clang. `make fuzz` runs each for
# FUZZ_SECONDS (default 30).
FUZZ_SRCS := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BINS := $(patsubst tests/fuzz/%.c,build/fuzz/%,$(FUZZ_SRCS))
FUZZ_SECONDS ?= 30
# The sources a harness compiles are prerequisites too (secondary expansion),
# so a changed parser rebuilds its harness.
.SECONDEXPANSION:
build/fuzz/%: tests/fuzz/%.c tests/fuzz/%.sources $$(shell cat tests/fuzz/$$*.sources)
	@mkdir -p $(dir $@)
	@echo "  FUZZ    $@"
	@clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE $(VERSION_DEF) -iquote lib/include \
		-iquote node-agent/src -iquote node-agent/init -iquote gateway/src $(PKG_CFLAGS) $< \
		$(shell cat tests/fuzz/$*.sources) -o $@ $(LIBS)

fuzz: $(FUZZ_BINS)
	@for f in $(FUZZ_BINS); do \
		mkdir -p build/fuzz/corpus-$$(basename $$f); \
		$$f -max_total_time=$(FUZZ_SECONDS) build/fuzz/corpus-$$(basename $$f) 2>&1 | tail -3 || exit 1; \
	done

# Code-interpreter kernel drivers: installed next to the binaries
# (build/share/sandpit/kernels), where the agent finds them by default.
KERNEL_SRCS := $(filter-out %/__pycache__,$(wildcard node-agent/kernels/*))
KERNELS     := $(patsubst node-agent/kernels/%,$(BUILD)/share/sandpit/kernels/%,$(KERNEL_SRCS))
$(BUILD)/share/sandpit/kernels/%: node-agent/kernels/%
	@mkdir -p $(dir $@)
	@echo "  INSTALL $@"
	@install -m 0644 $< $@
all: $(KERNELS)
# The Java kernel compiled once: half its start (bridge.py falls back to the
# JDK's single-file launch of the .java without it). -XDignore.symbol.file:
# no warning for sun.misc.Signal, its interrupt handler.
ifneq ($(shell command -v javac),)
JAVA_KERNEL := $(BUILD)/share/sandpit/kernels/JavaKernel.class
$(JAVA_KERNEL): node-agent/kernels/JavaKernel.java
	@mkdir -p $(dir $@)
	@echo "  JAVAC   $@"
	@javac -XDignore.symbol.file -d $(dir $@) $<
all: $(JAVA_KERNEL)
endif
