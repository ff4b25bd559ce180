# The two commands a newcomer needs (as root on a fresh Debian/Ubuntu machine):
#   make run    install what is missing, build, start a hub on http://127.0.0.1:8080 (memory engine)
#   make test   install what is missing, build once, run the whole suite (unit, Redis, WebSocket, two-node)
#   make demo   a hub with a simulated plant (statushub simulate): watch it at http://127.0.0.1:8080/

SWIFT ?= swift
DEBIAN_PACKAGES := libhiredis-dev redis-server zlib1g-dev
CONFIG ?= config/statushub.yaml
ARGS ?=

.PHONY: deps build run demo test release clean

# Installs only what is missing, so repeated runs are quick and need no network.
deps:
	@missing=""; for p in $(DEBIAN_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

build: deps
	$(SWIFT) build --product statushub

run: build
	$(SWIFT) run statushub serve --config $(CONFIG) $(ARGS)

# A hub (memory engine) with `statushub simulate` publishing a three-line plant at 5x; Ctrl-C stops both.
SPEED ?= 5
demo: build
	@bin=$$($(SWIFT) build --show-bin-path)/statushub; \
	$$bin serve --config $(CONFIG) $(ARGS) & hub=$$!; \
	trap 'kill $$hub 2>/dev/null' EXIT INT TERM; \
	until curl -sf http://127.0.0.1:8080/ready >/dev/null; do sleep 0.2; done; \
	echo "dashboard: http://127.0.0.1:8080/?line=Line-1"; \
	$$bin simulate --url http://127.0.0.1:8080 --speed $(SPEED)

# The suite, then a 10-second load-harness smoke run (loadtest/smoke.sh) on the debug binaries it built.
test: deps
	$(SWIFT) test
	SWIFT=$(SWIFT) loadtest/smoke.sh

release: deps
	$(SWIFT) build -c release --product statushub

clean:
	rm -rf .build
