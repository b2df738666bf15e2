"""On a CUDA device: every objective's step agrees with the CPU's, every attack runs, a job runs on
the GPU worker, and GCCS's and PCL's losses never wait for the device. Skipped without a GPU (CI never
has one); ``benchmarks/device_check.sh`` runs them where one is lent."""
import pytest
import torch

from engine.attacks import ATTACKS, attack_params
from engine.config import ObjectiveSpec, TrainConfig
from engine.data import load_dataset
from engine.jobs import DONE, JobManager
from engine.objectives import OBJECTIVES
from engine.robustness import robust_accuracy
from engine.train import build_member, train_job, train_step

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")]
CUDA = torch.device("cuda:0")
# Objectives whose step draws random numbers besides dropout (MAT's BIBO starts): compared for finiteness only
RANDOM_STEP = {"mat"}


def members(name: str):
    """The same member (seed, weights, batch) on the CPU and on the GPU, dropout off (its masks come
    from each device's own generator)."""
    config = TrainConfig(epochs=1, dropout=0.0, objectives=(ObjectiveSpec(name),))
    data = load_dataset("digits")
    built = []
    for device in (torch.device("cpu"), CUDA):
        member, _ = build_member(config, config.objectives[0], data.to(device), device)
        member.objective.set_epoch(10**6)  # past any warm-up (PCL's terms switch on)
        built.append((member, data.to(device), device))
    return built


@pytest.mark.parametrize("name", list(OBJECTIVES))
def test_a_training_step_on_cuda_matches_the_cpu(name):
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False  # compare in fp32
    results = []
    for member, data, device in members(name):
        xb, yb = data.x_train[:200], data.y_train[:200]
        parts, _ = train_step(member, xb, yb, device)
        weights = torch.cat([p.detach().flatten().cpu() for p in member.model.parameters()])
        results.append(({k: float(v) for k, v in parts.items()}, weights))
    (cpu_parts, cpu_w), (gpu_parts, gpu_w) = results
    assert set(cpu_parts) == set(gpu_parts)
    assert all(torch.isfinite(torch.tensor(v)) for v in gpu_parts.values())
    if name not in RANDOM_STEP:
        for key, value in cpu_parts.items():
            assert gpu_parts[key] == pytest.approx(value, rel=1e-3, abs=1e-4), key
        assert torch.allclose(cpu_w, gpu_w, rtol=1e-3, atol=1e-5)


def test_gccs_and_pcl_losses_never_wait_for_the_device():
    """Under CUDA's sync debug mode "error", any device-to-host read in their loss raises."""
    for name in ("gccs", "pcl"):
        (_, _, _), (member, data, device) = members(name)
        xb, yb = data.x_train[:200], data.y_train[:200]
        train_step(member, xb, yb, device)  # PCL seeds its prototypes here
        member.objective.set_epoch(10**6)
        member.model.train()
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            out = member.objective.training_loss(member.model, xb, yb)
            out.loss.backward()
        finally:
            torch.cuda.set_sync_debug_mode("default")


@pytest.fixture(scope="module")
def gpu_run(tmp_path_factory):
    """A CE run trained on the GPU, loaded there, and the first 32 test images on the device."""
    from cache import RunStore
    from engine.train import load_run

    store = RunStore(tmp_path_factory.mktemp("cuda-store"))
    (record,) = train_job(TrainConfig(epochs=3, device="cuda", objectives=(ObjectiveSpec("ce"),)), store)
    model, objective, _ = load_run(store, record["run_id"], CUDA)
    data = load_dataset("digits").to(CUDA)
    return model, objective, data.x_test[:32], data.y_test[:32]


EPS = {"linf": 0.1, "l2": 1.0, "sigma": 0.1, "degrees": 10.0}


@pytest.mark.parametrize("attack", [a for a, spec in ATTACKS.items() if spec.budget != "none"])
def test_every_attack_runs_on_cuda(attack, gpu_run):
    model, objective, x, y = gpu_run
    accuracy = robust_accuracy(model, objective, x, y, attack, EPS[ATTACKS[attack].budget], attack_params(attack, {}))
    assert 0.0 <= accuracy <= 1.0


def test_the_minimal_attacks_run_on_cuda(gpu_run):
    from engine import measures

    model, objective, x, y = gpu_run
    assert measures.deepfool_rho(model, objective, x, y)["rho"] > 0
    assert measures.cw_l2(model, objective, x, y, {"steps": 20, "search_steps": 2})["mean_l2"] > 0


def test_a_training_job_runs_on_the_gpu_worker(tmp_path):
    from cache import RunStore

    manager = JobManager(store=RunStore(tmp_path / "store"))
    job = manager.wait(manager.submit_training(TrainConfig(epochs=3, device="cuda", objectives=(
        ObjectiveSpec("ce"), ObjectiveSpec("gccs")))), timeout=300)
    assert job.status == DONE, job.error
    assert job.device.startswith("cuda") and all(r["device"].startswith("cuda") for r in job.result)
    assert all(r["final"]["test_acc"] > 0.5 for r in job.result)
