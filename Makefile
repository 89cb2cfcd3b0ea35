# Two commands for a fresh Debian/Ubuntu machine:
#   make run    install missing packages, build, start sohub-server
#   make test   install missing packages, build, run every test
BUILD ?= build
MESON_ARGS ?=
DATA_DIR ?= ./data
# make run: RTMP on 127.0.0.1:1935, the sample pages and the WebSocket
# endpoint on http://127.0.0.1:8080, the admin listener (server API,
# metrics, admin page) on 127.0.0.1:8081: loopback only.  The first run
# writes $(DATA_DIR)/run.ini with a random API key (printed).
HTTP_LISTEN ?= 127.0.0.1:8080
ADMIN_LISTEN ?= 127.0.0.1:8081
RUN_ARGS ?=

.PHONY: deps build run test bench clean

deps:
	@sh scripts/install-deps.sh

$(BUILD)/build.ninja:
	meson setup $(BUILD) $(MESON_ARGS)

build: deps $(BUILD)/build.ninja
	ninja -C $(BUILD)

run: build
	@mkdir -p $(DATA_DIR)
	@[ -f $(DATA_DIR)/run.ini ] || sh scripts/run-ini.sh $(DATA_DIR)/run.ini
	./$(BUILD)/app/sohub-server --data-dir $(DATA_DIR) --config $(DATA_DIR)/run.ini \
	    --set http_listen=$(HTTP_LISTEN) --set admin_listen=$(ADMIN_LISTEN) \
	    --set web_root=web --set admin_root=admin $(RUN_ARGS)

test: build
	meson test -C $(BUILD) --print-errorlogs --num-processes 2

bench: build
	sh bench/run.sh $(BUILD)

clean:
	rm -rf $(BUILD)
