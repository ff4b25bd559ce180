# The two commands a newcomer needs (as root on a fresh Debian/Ubuntu machine):
#   make run    install what is missing, build, start a hub on http://127.0.0.1:8080 (memory engine)
#   make test   install what is missing, build once, run the whole suite (unit, Redis, WebSocket, two-node)
#   make demo   a hub with a simulated plant (statushub simulate): watch it at http://127.0.0.1:8080/

SWIFT ?= swift
DEBIAN_PACKAGES := libhiredis-dev redis-server zlib1g-dev libmosquitto-dev mosquitto libjemalloc-dev
CONFIG ?= config/statushub.yaml
ARGS ?=

.PHONY: deps test-deps build run demo demo-sparkplug test release clean

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

# The same plant with its machines as Sparkplug B edge nodes: a mosquitto on 127.0.0.1:1883, the hub bridging it
# (config/demo-sparkplug.yaml), `statushub simulate --sparkplug`. Ctrl-C stops all three.
demo-sparkplug: build
	@bin=$$($(SWIFT) build --show-bin-path)/statushub; dir=$$(mktemp -d); chmod 777 $$dir; \
	printf 'listener 1883 127.0.0.1\nallow_anonymous true\n' >$$dir/mosquitto.conf; \
	mosquitto -c $$dir/mosquitto.conf & broker=$$!; \
	$$bin serve --config config/demo-sparkplug.yaml $(ARGS) & hub=$$!; \
	trap 'kill $$hub $$broker 2>/dev/null; rm -rf $$dir' EXIT INT TERM; \
	until curl -sf http://127.0.0.1:8080/ready | grep -qv degraded; do sleep 0.2; done; \
	echo "dashboard: http://127.0.0.1:8080/?line=Line-1 (machine status through mosquitto, Sparkplug B)"; \
	$$bin simulate --url http://127.0.0.1:8080 --speed $(SPEED) --sparkplug mqtt://127.0.0.1:1883

# What only the tests use: nginx (a reverse proxy in front of a hub, TrustedProxyTests), and the browser tests'
# tools — Debian's chromium (and openssl(1) for a TLS hub's throwaway certificate), Playwright + pytest from PyPI
# (pointed at that chromium; never `playwright install`). Installed only when missing, like `deps`.
TEST_PACKAGES := nginx-light chromium openssl
test-deps:
	@missing=""; for p in $(TEST_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	python3 -m pip --version >/dev/null 2>&1 || missing="$$missing python3-pip"; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi
	@python3 -c 'import playwright, pytest' 2>/dev/null || \
		python3 -m pip install -q playwright pytest 2>/dev/null || \
		python3 -m pip install -q --break-system-packages playwright pytest

# The suite (scripts/swift-test.sh: `swift test`, and a digest of what failed or crashed printed last), then the
# dashboard in a real Chromium against live hubs (tests/browser, on the binary the suite built), then a 10-second
# load-harness smoke run (loadtest/smoke.sh: the load, the plant mix, a restart storm in miniature) on the debug binaries.
# At most 16 tests at once (Swift Testing otherwise starts all ~320 together): on two cores the start of an unbounded
# run — dozens of redis-servers, clusters, sentinels and hubs at once — starved tests into timing failures, and the
# bounded run is no slower (2026-12-02: 104 s against 115 s).
test: deps test-deps
	SWIFT=$(SWIFT) scripts/swift-test.sh --experimental-maximum-parallelization-width 16
	STATUSHUB_BIN=$$($(SWIFT) build --show-bin-path)/statushub python3 -m pytest -q tests/browser
	SWIFT=$(SWIFT) loadtest/smoke.sh

release: deps
	$(SWIFT) build -c release --product statushub

clean:
	rm -rf .build
