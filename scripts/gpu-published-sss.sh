#!/usr/bin/env bash
# The published SSS settings (configs/sss-cifar10-stratified.toml, configs/sss-cifar100-stratified.toml) on one
# GPU: both `greenmachine reproduce` runs at once (each is launch-bound and leaves most of the GPU idle), after a
# tiny smoke run that checks the CUDA path (probing, GP fitness on the GPU, held-out scoring; its baselines run
# too, but a baseline failing on CUDA does not send the published runs to the CPU).
#
#   OUT=runs/gpu-published-sss GREENMACHINE_DATA=../shared/data bash scripts/gpu-published-sss.sh [SECONDS]
#
# SECONDS (default 3000) is a wall-clock budget: each run is interrupted (SIGINT, so its checkpoint is kept and
# `greenmachine reproduce` with the same --config and --out resumes it, on a GPU) when the budget is spent. Evolution and held-out scoring come first; the
# baselines on the held-out sample come last and are what a short budget cuts. If the smoke run fails, the two
# runs fall back to the CPU (a process pool of 7 workers each) and the log says so. Everything lands in $OUT.
set -u
BUDGET=${1:-3000}
OUT=${OUT:-runs/gpu-published-sss}
PY=${PYTHON:-python3}
start=$(date +%s)
# seconds of the budget left, at least 1: `timeout 0` would mean no limit at all
left() { local n=$(( BUDGET - ($(date +%s) - start) )); echo $(( n > 1 ? n : 1 )); }
export PYTHONUNBUFFERED=1 GREENMACHINE_TRIM_BYTES=${GREENMACHINE_TRIM_BYTES:-4294967296}
rm -rf /tmp/gm-smoke; mkdir -p "$OUT" /tmp/gm-smoke
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | tee "$OUT/machine.txt"
$PY -c "import torch, os; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'cpus', os.cpu_count())" \
    2>&1 | tee -a "$OUT/machine.txt"

cat > /tmp/gm-smoke/smoke.toml <<'TOML'
space = "sss"
dataset = "cifar10"
sampling = "stratified"
sample_size = 12
population = 8
generations = 2
seed = 0
device = "cuda"
eval_sample_size = 12
eval_sampling = "stratified"
TOML
device=cuda
# the evolution and its held-out score decide (scores.summary.json); a baseline failing on CUDA does not
timeout -s INT -k 10 150 $PY -m greenmachine reproduce --config /tmp/gm-smoke/smoke.toml \
    --out /tmp/gm-smoke/run --no-cache --quiet >"$OUT/smoke.log" 2>&1
echo "smoke run exited with $?" >> "$OUT/smoke.log"
if [ ! -f /tmp/gm-smoke/run/scores.summary.json ]; then
    echo "smoke run on the GPU failed (see smoke.log): the published settings fall back to the CPU" | tee -a "$OUT/machine.txt"
    device=cpu
fi
tail -3 "$OUT/smoke.log"

pids=()
for setting in sss-cifar10-stratified sss-cifar100-stratified; do
    config=configs/$setting.toml
    if [ "$device" = cpu ]; then
        config=/tmp/gm-smoke/$setting-cpu.toml
        sed 's/^device = .*/device = "cpu"/' "configs/$setting.toml" > "$config"
        printf 'workers = 7\nexecutor = "process"\n' >> "$config"
    fi
    OMP_NUM_THREADS=8 timeout -s INT -k 20 "$(left)" $PY -m greenmachine reproduce --config "$config" \
        --out "$OUT/$setting" --no-cache > "$OUT/$setting.log" 2>&1 &
    pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid"; echo "run $pid exited with $?"; done
echo "device=$device seconds=$(( $(date +%s) - start ))" | tee -a "$OUT/machine.txt"
for setting in sss-cifar10-stratified sss-cifar100-stratified; do
    echo "== $setting"; tail -4 "$OUT/$setting.log"; cat "$OUT/$setting/scores.summary.json" 2>/dev/null
done
