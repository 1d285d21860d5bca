#!/usr/bin/env bash
# End to end on a GPU: a real vLLM, a lorareg registry and `lorareg agent`; a tag move switches what
# vLLM serves under the same name.
#
#   bench/gpu/vllm_e2e.sh                          # a machine with an NVIDIA GPU and PyPI
#   E2E_ENGINE=standin bench/gpu/vllm_e2e.sh       # no GPU: tests/engines' vLLM stand-in, the repo's .venv
#
# 1. venvs: $E2E_WORK/venv-vllm (`pip install vllm peft`: the model is built with vLLM's own torch and
#    transformers) and $E2E_WORK/venv-lorareg (`pip install -e .[server]`: registry, CLI, agent). Two,
#    because lorareg's pins (huggingface_hub, fastapi) need not agree with a vLLM release's.
# 2. bench/gpu/make_tiny_llama.py builds a random 2-layer Llama with a tokenizer made here (nothing
#    from the Hub) and two LoRA adapters with different random weights.
# 3. `vllm serve <dir> --enable-lora --max-lora-rank 8 --max-loras 4` with
#    VLLM_ALLOW_RUNTIME_LORA_UPDATING=True; `lorareg serve` (SQLite, local blobs, LOREG_AUTH=required).
# 4. base register, push adapter-1 as acme/e2e:prod and adapter-2 as acme/e2e:v2, deployment
#    acme/e2e-pool following acme/e2e:prod, `lorareg agent --engine vllm` with a read token.
# 5. Waits for `lorareg deploy status --json` to show the replica converged, checks /v1/completions
#    (temperature 0, 8 tokens): the adapter's text differs from the base's; moves prod to v2, waits,
#    checks the text changed and /v1/models' root is the new digest's cache directory.
#
# Prints PASS/FAIL lines and TIME lines; exit 0 only when every check passed. Logs: $E2E_WORK/logs.
# Settings (environment): E2E_WORK (default: a new /tmp/lorareg-e2e.XXXXXX, removed after a run that
# passed unless E2E_KEEP=1; venvs already in E2E_WORK are reused), PYTHON (python3), VLLM_SPEC (the pip
# requirement, default vllm: a release with load_inplace on /v1/load_lora_adapter), VLLM_ARGS (more
# `vllm serve` flags), VLLM_GPU_MEMORY (0.5), REGISTRY_PORT (18100), VLLM_PORT (18101), E2E_WAIT
# (seconds per convergence, 120), E2E_VLLM_START (seconds for vLLM to come up, 900).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
ENGINE=${E2E_ENGINE:-vllm}
PYTHON=${PYTHON:-python3}
VLLM_SPEC=${VLLM_SPEC:-vllm}
REGISTRY_PORT=${REGISTRY_PORT:-18100}
VLLM_PORT=${VLLM_PORT:-18101}
WAIT=${E2E_WAIT:-120}
VLLM_START=${E2E_VLLM_START:-900}
PROMPT="ba ke mi no su ra te"
DEPLOYMENT=acme/e2e-pool
NAME=acme/e2e:prod # the deployment entry's name: the ref, so clients ask for model="acme/e2e:prod"
REPLICA=e2e-0
INTERVAL=2

if [[ -n ${E2E_WORK:-} ]]; then
    WORK=$E2E_WORK
    mkdir -p "$WORK"
else
    WORK=$(mktemp -d /tmp/lorareg-e2e.XXXXXX)
fi
WORK=$(cd "$WORK" && pwd)
LOGS=$WORK/logs
CACHE=$WORK/cache
mkdir -p "$LOGS" "$CACHE"

PIDS=()
PASSED=0
FAILED=0
TIMES=()

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
timed() { # NAME START: record and print how long a phase took
    local took
    took=$(since "$2")
    TIMES+=("$1 ${took}s")
    echo "TIME $1 ${took}s"
}
pass() { echo "PASS $1"; PASSED=$((PASSED + 1)); }
fail() { echo "FAIL $1"; FAILED=$((FAILED + 1)); }
check() { # WHAT COMMAND...: PASS when the command succeeds
    local what=$1
    shift
    if "$@"; then pass "$what"; else fail "$what"; fi
}
differ() { [[ $1 != "$2" ]]; }
same() { [[ $1 == "$2" ]]; }
logs_tail() {
    local log
    for log in "$LOGS"/*.log; do
        [[ -e $log ]] || continue
        echo "--- last lines of $log"
        tail -n 25 "$log"
    done
}
abort() { # WHAT: a FAIL that leaves nothing to check after it
    fail "$1"
    logs_tail
    exit 1
}

alive() { # PID: running (not a zombie)
    local state
    state=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
    [[ $state != Z* ]]
}
start() { # NAME COMMAND...: run in the background, in its own process group, logging to $LOGS/NAME.log
    local name=$1
    shift
    if command -v setsid >/dev/null; then
        setsid "$@" >"$LOGS/$name.log" 2>&1 &
    else
        "$@" >"$LOGS/$name.log" 2>&1 &
    fi
    LAST_PID=$!
    PIDS+=("$LAST_PID")
}
stop() { # PID: SIGTERM its process group, then SIGKILL what is left after 20 s
    local pid=$1 _
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 40); do
        alive "$pid" || break
        sleep 0.5
    done
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
cleanup() {
    local status=$? i
    trap - EXIT INT TERM
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do stop "${PIDS[i]}"; done # the agent first, the engine last
    if ((${#TIMES[@]})); then
        echo "timings:"
        printf '  %s\n' "${TIMES[@]}"
    fi
    echo "$PASSED passed, $FAILED failed; logs in $LOGS"
    if [[ ${E2E_KEEP:-0} != 1 && -z ${E2E_WORK:-} && $status -eq 0 ]]; then rm -rf "$WORK"; fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_http() { # URL SECONDS PID: until URL answers 200, while PID lives
    local deadline=$((SECONDS + $2))
    while ((SECONDS < deadline)); do
        if "$PY" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=5)' "$1" 2>/dev/null; then
            return 0
        fi
        alive "$3" || return 1
        sleep 1
    done
    return 1
}
field() { # EXPR: evaluate EXPR on the JSON document d read from stdin
    "$PY" -c 'import json, sys; d = json.load(sys.stdin); print(eval(sys.argv[1], {"__builtins__": {}}, {"d": d}))' "$1"
}
complete() { # MODEL: the completion's text (JSON-quoted) for $PROMPT, greedy, 8 tokens, EOS ignored
    "$PY" - "$ENGINE_URL" "$1" "$PROMPT" <<'PY'
import json, sys, urllib.request

url, model, prompt = sys.argv[1:4]
body = {"model": model, "prompt": prompt, "temperature": 0, "max_tokens": 8, "ignore_eos": True}
request = urllib.request.Request(
    f"{url}/v1/completions", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
)
with urllib.request.urlopen(request, timeout=300) as answer:  # the first LoRA request compiles kernels
    print(json.dumps(json.load(answer)["choices"][0]["text"]))
PY
}
served_root() { # MODEL: the root /v1/models gives for MODEL (an adapter's: its lora_path)
    "$PY" - "$ENGINE_URL" "$1" <<'PY'
import json, sys, urllib.request

url, model = sys.argv[1:3]
with urllib.request.urlopen(f"{url}/v1/models", timeout=30) as answer:
    cards = {card["id"]: card for card in json.load(answer)["data"]}
print(cards[model]["root"] if model in cards else "(not served)")
PY
}
converged() { # DIGEST: the replica's heartbeat says it serves DIGEST under $NAME, converged, no error
    local status
    status=$("$LOREG" --json deploy status "$DEPLOYMENT" 2>>"$LOGS/status.err") || return 1
    "$PY" - "$REPLICA" "$NAME" "$1" "$status" <<'PY'
import json, sys

replica, name, digest, status = sys.argv[1:5]
found = {r["replica"]: r for r in json.loads(status)["replicas"]}
r = found.get(replica)
ok = (
    r is not None
    and r["converged"]
    and not r["stale"]
    and r["error"] is None
    and r["generation"] == r["target_generation"]
    and r["loaded"].get(name) == digest
)
sys.exit(0 if ok else 1)
PY
}
wait_converged() { # DIGEST: until converged DIGEST, at most $WAIT seconds
    local deadline=$((SECONDS + WAIT))
    while ((SECONDS < deadline)); do
        converged "$1" && return 0
        alive "$AGENT_PID" || return 1
        sleep 0.5
    done
    return 1
}

echo "lorareg e2e: engine $ENGINE, work $WORK"

# 1. Environments.
t=$(now)
if [[ $ENGINE == vllm ]]; then
    command -v nvidia-smi >/dev/null || abort "an NVIDIA GPU: nvidia-smi is not on PATH (E2E_ENGINE=standin runs without one)"
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | sed 's/^/GPU /'
    if [[ ! -x $WORK/venv-vllm/bin/vllm ]]; then
        "$PYTHON" -m venv "$WORK/venv-vllm"
        "$WORK/venv-vllm/bin/python" -m pip install --quiet --upgrade pip >"$LOGS/pip-vllm.out"
        "$WORK/venv-vllm/bin/python" -m pip install "$VLLM_SPEC" peft >>"$LOGS/pip-vllm.out" 2>&1 ||
            abort "pip install $VLLM_SPEC peft (see $LOGS/pip-vllm.out)"
    fi
    if [[ ! -x $WORK/venv-lorareg/bin/lorareg ]]; then
        "$PYTHON" -m venv "$WORK/venv-lorareg"
        "$WORK/venv-lorareg/bin/python" -m pip install --quiet --upgrade pip >"$LOGS/pip-lorareg.out"
        "$WORK/venv-lorareg/bin/python" -m pip install -e "${ROOT}[server]" >>"$LOGS/pip-lorareg.out" 2>&1 ||
            abort "pip install -e ${ROOT}[server] (see $LOGS/pip-lorareg.out)"
    fi
    MODEL_PY=$WORK/venv-vllm/bin/python
    PY=$WORK/venv-lorareg/bin/python
    LOREG=$WORK/venv-lorareg/bin/lorareg
    echo "vLLM $("$MODEL_PY" -c 'import vllm; print(vllm.__version__)')," \
        "torch $("$MODEL_PY" -c 'import torch; print(torch.__version__)')"
elif [[ $ENGINE == standin ]]; then
    [[ -x $ROOT/.venv/bin/lorareg ]] || abort "the repo's .venv (make .venv/bin/.dev) for E2E_ENGINE=standin"
    MODEL_PY=$ROOT/.venv/bin/python
    PY=$ROOT/.venv/bin/python
    LOREG=$ROOT/.venv/bin/lorareg
else
    abort "E2E_ENGINE is vllm or standin, not $ENGINE"
fi
timed environments "$t"

# 2. The tiny Llama and two adapters.
t=$(now)
"$MODEL_PY" "$ROOT/bench/gpu/make_tiny_llama.py" "$WORK/model" --prompt "$PROMPT" >"$LOGS/model.json" 2>"$LOGS/model.err" ||
    abort "make_tiny_llama.py (see $LOGS/model.err)"
BASE_DIR=$WORK/model/base
timed "tiny Llama + 2 adapters" "$t"

# 3. The engine (it loads while the registry is set up) and the registry.
t_engine=$(now)
if [[ $ENGINE == vllm ]]; then
    ENGINE_URL=http://127.0.0.1:$VLLM_PORT
    read -r -a extra <<<"${VLLM_ARGS:-}"
    start vllm env VLLM_ALLOW_RUNTIME_LORA_UPDATING=True "$WORK/venv-vllm/bin/vllm" serve "$BASE_DIR" \
        --host 127.0.0.1 --port "$VLLM_PORT" --enable-lora --max-lora-rank 8 --max-loras 4 \
        --max-model-len 256 --max-num-seqs 8 --dtype bfloat16 --enforce-eager \
        --gpu-memory-utilization "${VLLM_GPU_MEMORY:-0.5}" ${extra[@]+"${extra[@]}"}
    ENGINE_PID=$LAST_PID
else
    rm -f "$WORK/standin.url"
    start standin env PYTHONPATH="$ROOT" "$PY" -c '
import pathlib, sys, time
from tests.engines import running_engine
with running_engine("vllm", base_model=sys.argv[1], base_path=sys.argv[1]) as engine:
    pathlib.Path(sys.argv[2]).write_text(engine.url)
    while True:
        time.sleep(3600)
' "$BASE_DIR" "$WORK/standin.url"
    ENGINE_PID=$LAST_PID
fi

t=$(now)
export LOREG_HOME=$WORK/home LOREG_AUTH=required LOREG_URL=http://127.0.0.1:$REGISTRY_PORT
unset LOREG_TOKEN LOREG_DATABASE_URL LOREG_BLOB_URL LOREG_CACHE
start registry "$LOREG" serve --port "$REGISTRY_PORT"
REGISTRY_PID=$LAST_PID
wait_http "$LOREG_URL/readyz" 120 "$REGISTRY_PID" || abort "lorareg serve came up on $LOREG_URL"
timed "registry up" "$t"

t=$(now)
LOREG_TOKEN=$("$LOREG" --json token create e2e-admin --scope admin --bootstrap | field 'd["secret"]')
export LOREG_TOKEN
"$LOREG" --json base register "$BASE_DIR" --name tiny-llama-e2e >"$LOGS/base.json" || abort "lorareg base register"
DIGEST1=$("$LOREG" --json push "$WORK/model/adapter-1" acme/e2e:prod --base tiny-llama-e2e -m "adapter 1" | field 'd["digest"]')
DIGEST2=$("$LOREG" --json push "$WORK/model/adapter-2" acme/e2e:v2 --base tiny-llama-e2e -m "adapter 2" | field 'd["digest"]')
check "two distinct adapters pushed ($DIGEST1, $DIGEST2)" differ "$DIGEST1" "$DIGEST2"
AGENT_TOKEN=$("$LOREG" --json token create e2e-agent --scope read --namespace acme | field 'd["secret"]')
"$LOREG" deploy create "$DEPLOYMENT" --base tiny-llama-e2e >"$LOGS/deploy.out"
"$LOREG" deploy add "$DEPLOYMENT" "$NAME" >>"$LOGS/deploy.out"
timed "register, push, deployment" "$t"

if [[ $ENGINE == vllm ]]; then
    wait_http "$ENGINE_URL/health" "$VLLM_START" "$ENGINE_PID" || abort "vllm serve came up on $ENGINE_URL"
else
    for _ in $(seq 60); do [[ -s $WORK/standin.url ]] && break; sleep 0.5; done
    [[ -s $WORK/standin.url ]] || abort "the stand-in came up"
    ENGINE_URL=$(cat "$WORK/standin.url")
fi
timed "engine up (from its start)" "$t_engine"
check "the engine serves the base from $BASE_DIR" same "$(served_root "$BASE_DIR")" "$BASE_DIR"
BASE_TEXT=$(complete "$BASE_DIR")
echo "base:      $BASE_TEXT"

# 4. The agent, with a read token of the namespace.
t=$(now)
start agent env LOREG_TOKEN="$AGENT_TOKEN" "$LOREG" agent --deployment "$DEPLOYMENT" --engine vllm \
    --engine-url "$ENGINE_URL" --cache "$CACHE" --replica "$REPLICA" --interval "$INTERVAL" --label pool=e2e
AGENT_PID=$LAST_PID
wait_converged "$DIGEST1" || abort "the replica converged on $NAME = $DIGEST1 within ${WAIT}s"
timed "agent start to converged" "$t"
pass "deploy status: $REPLICA converged on $NAME = $DIGEST1"
check "the engine serves $NAME from the cache" \
    same "$(served_root "$NAME")" "$CACHE/versions/${DIGEST1#sha256:}"
TEXT1=$(complete "$NAME")
echo "adapter 1: $TEXT1"
check "the adapter's completion differs from the base's" differ "$TEXT1" "$BASE_TEXT"

# 5. Move the tag: the agent reloads the same name with the other digest.
t=$(now)
"$LOREG" tag acme/e2e:v2 prod >>"$LOGS/deploy.out"
wait_converged "$DIGEST2" || abort "the replica converged on $NAME = $DIGEST2 within ${WAIT}s of the tag move"
timed "tag move to converged" "$t"
pass "deploy status: $REPLICA converged on $NAME = $DIGEST2 after the tag move"
check "the engine serves $NAME from the new digest's directory" \
    same "$(served_root "$NAME")" "$CACHE/versions/${DIGEST2#sha256:}"
TEXT2=$(complete "$NAME")
echo "adapter 2: $TEXT2"
check "the completion changed with the tag move" differ "$TEXT2" "$TEXT1"
check "the second adapter's completion differs from the base's" differ "$TEXT2" "$BASE_TEXT"

((FAILED == 0))
