#!/usr/bin/env bash
# The checks that need a GPU, in one run of at most 8 minutes (the device tool lends one for 15):
#   1. the tests marked cuda (every objective's step against the CPU's, every attack, a GPU job,
#      GCCS and PCL without host syncs);
#   2. each objective's step time against CE's on CIFAR-shaped images with ResNet-18;
#   3. the workbench epoch against a bare loop on digits.
# Everything is written to $OUT (the device tool brings it back) or ./device-check when unset.
# The bf16 / channels_last / compile comparisons of issue 11 are not here yet: those options do not exist.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-device-check}"
mkdir -p "$OUT"
PY="${PY:-.venv/bin/python}"
deadline() { timeout --signal=INT "$1" "${@:2}"; }

{ nvidia-smi || true; "$PY" -c "import torch; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name(0))"; } \
  > "$OUT/device.txt" 2>&1
deadline 240 "$PY" -m pytest -q -p no:cacheprovider -m cuda tests/test_cuda.py > "$OUT/cuda_tests.txt" 2>&1
echo "cuda tests: exit $?" | tee -a "$OUT/summary.txt"
deadline 120 "$PY" benchmarks/bench_objectives.py --device cuda --dataset cifar10 --synthetic --model resnet18 \
  --batch-size 200 --steps 20 --repeats 2 > "$OUT/bench_objectives_cifar_resnet18.txt" 2>&1
echo "bench_objectives: exit $?" | tee -a "$OUT/summary.txt"
deadline 90 "$PY" benchmarks/bench_train.py --device cuda --epochs 10 --repeats 2 > "$OUT/bench_train_digits.txt" 2>&1
echo "bench_train: exit $?" | tee -a "$OUT/summary.txt"
tail -n 3 "$OUT"/*.txt
