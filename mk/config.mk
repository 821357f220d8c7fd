# Toolchain and flags. SANITIZE=1 builds into build/asan with ASan+UBSan.
CC ?= gcc
PKG_CONFIG ?= pkg-config

WARNINGS := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
            -Wformat=2 -Wimplicit-fallthrough -Wvla
HARDEN   := -D_FORTIFY_SOURCE=2 -fstack-protector-strong
# The version, from one place: VERSION (the images' tag and the chart's
# appVersion follow it; test_container_images.py checks).
VERSION_DEF := -DSANDPIT_VERSION='"$(shell cat VERSION)"'
BASE_CFLAGS := -std=gnu17 -g -D_GNU_SOURCE $(VERSION_DEF) $(WARNINGS) $(HARDEN) -MMD -MP \
               -iquote lib/include -iquote node-agent/src -iquote node-agent/init -iquote cli/src \
               -iquote gateway/src

ifeq ($(SANITIZE),1)
BUILD    ?= build/asan
OPT      := -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all
else
BUILD    ?= build
OPT      := -O2
endif

# Binaries go to build/bin; a SANITIZE=1 build keeps everything, binaries too,
# under build/asan so the two never overwrite each other.
BIN      := $(BUILD)/bin
OBJ      := $(BUILD)/obj

# pkg-config is asked when a recipe first needs the flags, never while the
# Makefile is read: on a fresh machine the packages (pkg-config itself among
# them) are installed by the `deps` step of the same `make` run, after parsing.
# `lazy_once` runs the command on first use and keeps the answer.
lazy_once = $(eval $(1) := $$(shell $(2)))$($(1))
PKGS     := json-c libmicrohttpd gnutls libcurl libcrypto libcgroup libarchive yaml-0.1 libnl-3.0 libnl-route-3.0 libnftables
PKG_LIBS_ = $(call lazy_once,PKG_LIBS_,$(PKG_CONFIG) --libs $(PKGS))
PKG_CFLAGS = $(call lazy_once,PKG_CFLAGS,$(PKG_CONFIG) --cflags $(PKGS))
CMOCKA_LIBS = $(call lazy_once,CMOCKA_LIBS,$(PKG_CONFIG) --libs cmocka)
LIBS      = $(PKG_LIBS_) -lpthread -lm

CFLAGS    = $(BASE_CFLAGS) $(OPT) $(PKG_CFLAGS) $(EXTRA_CFLAGS)
LDFLAGS  := $(OPT) $(EXTRA_LDFLAGS)
