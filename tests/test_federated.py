"""FedD3 against FedAvg (datadistill.experiments.federated): partitions, byte counting, FedAvg's server and
client steps, FedD3's label mapping, parallel clients, the written comparison and bad input."""

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from datadistill.experiments.federated import (
    VERDICT,
    FederatedConfig,
    LocalTraining,
    build_federated_config,
    build_net,
    compare_runs,
    fedd3_client,
    local_seed,
    model_state,
    parse_partition,
    partition_indices,
    run_fedavg,
    run_fedd3,
    run_federated,
    safetensors_bytes,
    select_clients,
    synthetic_upload,
    upload_bytes,
    weighted_average,
)
from datadistill.errors import ConfigError, UnknownNameError
from datadistill.io import load_synthetic_set
from datadistill.runtime import make_generator
from helpers import make_tiny_dataset

REPO = Path(__file__).resolve().parents[1]
PIXELS = 1 * 28 * 28


def shuffled_labels(per_class=30, classes=10, seed=0):
    labels = torch.arange(classes).repeat(per_class)
    return labels[torch.randperm(len(labels), generator=make_generator(seed))]


def check_disjoint_cover(parts, n):
    everything = torch.cat(parts)
    assert len(everything) == n, "an image is missing or given twice"
    assert torch.equal(everything.sort().values, torch.arange(n))
    assert all(len(p) >= 1 for p in parts)


def tiny_config(**kw):
    base = {"clients": 3, "partition": "iid", "model": "lenet", "client_method": "dm", "client_ipc": 1,
            "client_iterations": 1, "client_args": {"batch_real": 4, "dsa_strategy": "none"}, "server_epochs": 1,
            "server_batch": 8, "server_dsa_strategy": "none", "rounds": 2, "local_batch": 8, "local_lr": 0.05,
            "workers": 0, "device": "cpu", "seed": 3}
    return FederatedConfig.from_mapping({**base, **kw})


# ------------------------------------------------------------------------------------ partitions


@pytest.mark.parametrize("clients", [1, 3, 7])
def test_iid_partition_is_equal_disjoint_covering_and_seeded(clients):
    labels = shuffled_labels()
    parts = partition_indices(labels, clients, "iid", seed=1)
    assert len(parts) == clients
    check_disjoint_cover(parts, len(labels))
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1
    again = partition_indices(labels, clients, "iid", seed=1)
    assert all(torch.equal(a, b) for a, b in zip(parts, again))
    if clients > 1:
        other = partition_indices(labels, clients, "iid", seed=2)
        assert not all(torch.equal(a, b) for a, b in zip(parts, other))


@pytest.mark.parametrize("clients,k", [(5, 2), (10, 2), (4, 3), (10, 1), (3, 10)])
def test_noniid_partition_gives_every_client_exactly_k_classes(clients, k):
    labels = shuffled_labels()
    parts = partition_indices(labels, clients, f"noniid:{k}", seed=4, num_classes=10)
    check_disjoint_cover(parts, len(labels))
    for p in parts:
        assert len(torch.unique(labels[p])) == k
    # every class is cut into near-equal shards among the clients holding it
    for c in range(10):
        shares = [int((labels[p] == c).sum()) for p in parts if (labels[p] == c).any()]
        assert max(shares) - min(shares) <= 1
    again = partition_indices(labels, clients, f"noniid:{k}", seed=4, num_classes=10)
    assert all(torch.equal(a, b) for a, b in zip(parts, again))


def test_noniid_class_sets_depend_on_the_seed():
    labels = shuffled_labels()
    sets = {tuple(tuple(torch.unique(labels[p]).tolist()) for p in partition_indices(labels, 5, "noniid:2", seed=s))
            for s in range(4)}
    assert len(sets) > 1


def test_dirichlet_partition_is_disjoint_covering_seeded_and_skewed_for_small_alpha():
    labels = shuffled_labels(per_class=60)

    def skew(alpha):  # mean share of a client's most frequent class
        parts = partition_indices(labels, 6, f"dirichlet:{alpha}", seed=5, num_classes=10)
        check_disjoint_cover(parts, len(labels))
        return sum(torch.bincount(labels[p], minlength=10).max().item() / len(p) for p in parts) / len(parts)

    assert skew(0.05) > 0.5 > skew(1000.0)
    a = partition_indices(labels, 6, "dirichlet:0.5", seed=5)
    b = partition_indices(labels, 6, "dirichlet:0.5", seed=5)
    assert all(torch.equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("text,needle", [
    ("bogus", "'bogus'"), ("noniid", "'noniid'"), ("noniid:0", "noniid:K"), ("noniid:two", "noniid:K"),
    ("dirichlet:0", "ALPHA > 0"), ("dirichlet:-1", "ALPHA > 0"), ("dirichlet:nan", "ALPHA > 0"), ("iid:3", "'iid:3'"),
])
def test_bad_partition_strings(text, needle):
    with pytest.raises(ConfigError) as info:
        parse_partition(text)
    assert needle in str(info.value) and text in str(info.value)


@pytest.mark.parametrize("clients,partition,needle", [
    (0, "iid", "clients = 0"), (301, "iid", "only 300 images"), (3, "noniid:11", "only 10 classes"),
    (3, "noniid:3", "cannot cover the 10 classes"),
])
def test_partition_rejects_impossible_splits(clients, partition, needle):
    with pytest.raises(ConfigError, match=needle):
        partition_indices(shuffled_labels(), clients, partition, num_classes=10)


# ----------------------------------------------------------------------------------------- bytes


def test_bytes_are_counted_exactly(tmp_path):
    images = torch.zeros(3, 1, 2, 2, dtype=torch.float64)  # sent as float32
    upload = synthetic_upload(images, torch.tensor([0, 4, 4]))
    assert upload["images"].dtype == torch.float32 and upload["labels"].dtype == torch.int64
    assert upload_bytes(upload) == 3 * 4 * 4 + 3 * 8
    save_file(upload, str(tmp_path / "u.safetensors"))
    assert safetensors_bytes(upload) == (tmp_path / "u.safetensors").stat().st_size > upload_bytes(upload)
    net = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    state = model_state(net)
    assert "1.num_batches_tracked" not in state  # integer buffer: not sent
    assert upload_bytes(state) == (3 * 2 + 2 + 4 * 2) * 4


# ---------------------------------------------------------------------------------------- FedAvg


def test_weighted_average_by_sample_counts():
    a = {"w": torch.tensor([[1.0, 2.0]]), "b": torch.tensor([0.0])}
    b = {"w": torch.tensor([[4.0, 8.0]]), "b": torch.tensor([3.0])}
    avg = weighted_average([a, b], [1, 3])
    assert torch.allclose(avg["w"], torch.tensor([[3.25, 6.5]]))
    assert torch.allclose(avg["b"], torch.tensor([2.25]))
    assert torch.equal(weighted_average([b], [7])["w"], b["w"])
    for states, counts in (([a, b], [1]), ([a, b], [1, 0]), ([], []), ([a, {"w": a["w"]}], [1, 1]),
                           ([a, {"w": torch.zeros(2, 1), "b": a["b"]}], [1, 1])):
        with pytest.raises(ConfigError):
            weighted_average(states, counts)


def test_select_clients_is_a_seeded_fraction():
    picked = select_clients(10, 0.3, seed=1, round_=4)
    assert len(picked) == 3 == len(set(picked)) and picked == sorted(picked) and all(0 <= i < 10 for i in picked)
    assert picked == select_clients(10, 0.3, seed=1, round_=4)
    assert len({tuple(select_clients(10, 0.3, seed=1, round_=r)) for r in range(1, 8)}) > 1
    assert select_clients(10, 1.0, 0, 1) == list(range(10))
    assert select_clients(10, 0.01, 0, 1) != []


def sgd_by_hand(state, images, labels, settings, seed, spec):
    """Plain mini-batch SGD written out here, independently of local_train."""
    net = build_net("lenet", spec, 12345)
    net.load_state_dict(state, strict=False)
    opt = torch.optim.SGD(net.parameters(), lr=settings.lr)
    gen = make_generator(seed)
    net.train()
    for _ in range(settings.epochs):
        order = torch.randperm(len(labels), generator=gen)
        for i in range(0, len(order), settings.batch_size):
            idx = order[i:i + settings.batch_size]
            loss = F.cross_entropy(net(images[idx]), labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model_state(net)


def test_fedavg_round_is_the_weighted_average_of_local_sgd():
    data = make_tiny_dataset(per_class=10)
    spec, settings = data.spec, LocalTraining(epochs=2, lr=0.05, batch_size=8)
    start = model_state(build_net("lenet", spec, 7))
    # one client holding everything: one round is exactly local training from the global weights
    everyone = [torch.arange(len(data.train))]
    one = run_fedavg(data.train, data.test, spec, everyone, model="lenet", rounds=1, fraction=1.0,
                     settings=settings, seed=2, initial_state=start)
    by_hand = sgd_by_hand(start, data.train.images, data.train.labels, settings, local_seed(2, 1, 0), spec)
    assert one["final_state"].keys() == by_hand.keys()
    assert all(torch.allclose(one["final_state"][k], by_hand[k], atol=1e-6) for k in by_hand)
    assert not torch.equal(by_hand["classifier.weight"], start["classifier.weight"])
    # two clients of different sizes: the average weighted by their image counts
    parts = [torch.arange(0, 10), torch.arange(10, 30)]
    two = run_fedavg(data.train, data.test, spec, parts, model="lenet", rounds=1, fraction=1.0, settings=settings,
                     seed=2, initial_state=start)
    local = [sgd_by_hand(start, data.train.images[p], data.train.labels[p], settings, local_seed(2, 1, i), spec)
             for i, p in enumerate(parts)]
    for k in local[0]:
        expected = (10 * local[0][k] + 20 * local[1][k]) / 30
        assert torch.allclose(two["final_state"][k], expected, atol=1e-6), k
    row = two["rows"][0]
    params = sum(v.numel() for v in start.values())
    assert row["clients"] == [0, 1] and row["bytes_uploaded"] == 2 * params * 4 == two["bytes_per_client_round"] * 2


# ----------------------------------------------------------------------------------------- FedD3


def test_fedd3_client_distils_only_its_classes_and_maps_labels_back():
    data = make_tiny_dataset(per_class=10)
    keep = (data.train.labels == 0) | (data.train.labels == 2)
    images, labels = data.train.images[keep], data.train.labels[keep]
    images, labels = torch.cat([images, data.train.images[data.train.labels == 1][:1]]), torch.cat([labels, torch.tensor([1])])
    cfg = tiny_config(client_method="random", client_ipc=2).client_distill_config(11)
    out = fedd3_client(4, images, labels, data.spec, cfg)
    assert out["client"] == 4 and out["classes"] == [0, 2] and out["skipped_classes"] == [1]
    assert out["images"].shape == (4, 1, 28, 28) and out["labels"].dtype == torch.int64
    assert sorted(out["labels"].tolist()) == [0, 0, 2, 2]
    for img, lab in zip(out["images"], out["labels"]):  # "random" uploads real images: check each one's class
        match = (images - img).flatten(1).abs().amax(dim=1) == 0
        assert match.sum() == 1 and labels[match].item() == lab.item()


def test_fedd3_with_2_workers_equals_in_process():
    data = make_tiny_dataset(per_class=8)
    parts = partition_indices(data.train.labels, 3, "noniid:2", seed=0, num_classes=3)
    here = run_fedd3(tiny_config(workers=0), data, parts)
    pool = run_fedd3(tiny_config(workers=2), data, parts)
    assert torch.equal(here["synthetic_set"].images, pool["synthetic_set"].images)
    assert torch.equal(here["synthetic_set"].labels, pool["synthetic_set"].labels)
    assert here["accuracies"] == pool["accuracies"] and here["bytes_per_client"] == pool["bytes_per_client"]
    assert [c["classes"] for c in here["clients"]] == [torch.unique(data.train.labels[p]).tolist() for p in parts]
    start = data.train.images[parts[0]]
    assert not any(torch.equal(start[j], here["synthetic_set"].images[0]) for j in range(len(start)))  # learned


# -------------------------------------------------------------------------------- the whole run


def test_run_federated_writes_the_comparison(tmp_path):
    data = make_tiny_dataset(per_class=10)
    out = tmp_path / "fed"
    stages = []
    res = run_federated(tiny_config(partition="noniid:2", rounds=3, client_fraction=0.67), out, dataset=data,
                        progress=lambda stage, msg: stages.append(stage))
    assert {"partition", "fedd3", "server", "fedavg"} <= set(stages)
    summary = json.loads((out / "federated.json").read_text())
    d3, avg, cmp = summary["fedd3"], summary["fedavg"], summary["comparison"]
    assert d3["synthetic_images"] == 6 and d3["rounds"] == 1  # 3 clients x 2 classes x IPC 1
    assert d3["bytes_per_client"] == [2 * (PIXELS * 4 + 8)] * 3 and d3["bytes_total"] == sum(d3["bytes_per_client"])
    assert all(f > b for f, b in zip(d3["safetensors_bytes_per_client"], d3["bytes_per_client"]))
    params = sum(p.numel() for p in build_net("lenet", data.spec, 0).parameters())
    assert avg["bytes_per_client_round"] == params * 4
    rows = avg["rows"]
    assert [r["round"] for r in rows] == [1, 2, 3] and all(len(r["clients"]) == 2 for r in rows)
    assert [r["cumulative_bytes_uploaded"] for r in rows] == [2 * params * 4 * r for r in (1, 2, 3)]
    lines = (out / "federated.csv").read_text().splitlines()
    assert lines[0].startswith("round,clients,accuracy") and len(lines) == 4
    assert [float(line.split(",")[2]) for line in lines[1:]] == [r["accuracy"] for r in rows]
    # the verdict follows from the figures
    reached = [r for r in rows if r["accuracy"] >= d3["accuracy_mean"]]
    if reached:
        assert cmp["value"] == (d3["bytes_total"] < reached[0]["cumulative_bytes_uploaded"])
        assert cmp["fedavg_bytes_to_reach"] == reached[0]["cumulative_bytes_uploaded"]
    else:
        assert cmp["fedavg_bytes_to_reach"] is None
    assert res.verdict == cmp["value"] and cmp["statement"] == VERDICT
    md = (out / "federated.md").read_text()
    assert VERDICT in md and {True: "**true**", False: "**false**", None: "**undetermined**"}[cmp["value"]] in md
    assert f"{d3['bytes_total']:,} B" in md
    assert (out / "federated.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    union = load_synthetic_set(out / "fedd3_synthetic.safetensors")
    assert torch.equal(union.images, res.synthetic_set.images) and union.labels.tolist() == res.synthetic_set.labels.tolist()


@pytest.mark.parametrize("d3_bytes,accs,value", [
    (100, [10.0, 60.0], True),     # FedAvg needs 2 rounds = 200 B to reach 50 %
    (300, [10.0, 60.0], False),
    (150, [10.0, 20.0], True),     # never reached, yet FedAvg already spent 200 B
    (250, [10.0, 20.0], None),     # never reached within 200 B: undetermined
])
def test_verdict(d3_bytes, accs, value):
    rows = [{"round": i + 1, "accuracy": a, "cumulative_bytes_uploaded": 100 * (i + 1)} for i, a in enumerate(accs)]
    cmp = compare_runs({"accuracy_mean": 50.0, "bytes_total": d3_bytes}, {"rows": rows})
    assert cmp["value"] is value
    assert cmp["fedavg_bytes_to_reach"] == (200 if accs[-1] >= 50 else None)


def test_cpu_config_file_is_valid():
    cfg = build_federated_config(REPO / "configs" / "federated" / "mnist_cpu.yaml", {"clients": 4, "partition": "noniid:3"})
    assert cfg.clients == 4 and cfg.partition == "noniid:3" and cfg.model == "lenet"
    assert build_federated_config(None, {"client_args": {"lr_img": 2}}).client_distill_config(0).lr_img == 2.0


@pytest.mark.parametrize("change,error,needle", [
    ({"partition": "mixed"}, ConfigError, "'mixed'"),
    ({"partition": "dirichlet:0"}, ConfigError, "dirichlet:0"),
    ({"clients": 0}, ConfigError, "clients = 0"),
    ({"clients": 31}, ConfigError, "only 30 images"),
    ({"partition": "noniid:4"}, ConfigError, "only 3 classes"),
    ({"client_method": "nope"}, UnknownNameError, "nope"),
    ({"model": "nope"}, UnknownNameError, "nope"),
    ({"rounds": 0}, ConfigError, "rounds = 0"),
    ({"client_fraction": 1.5}, ConfigError, "client_fraction = 1.5"),
    ({"client_args": {"zca_eps": 0.1}}, ConfigError, "zca_eps"),
    ({"client_args": {"bogus": 1}}, ConfigError, "bogus"),
    ({"colour": "red"}, ConfigError, "colour"),
    ({"client_ipc": 11}, ConfigError, "client_ipc = 11"),
])
def test_bad_input_raises_one_clear_error_and_writes_nothing(tmp_path, change, error, needle):
    data = make_tiny_dataset(per_class=10)
    values = {**tiny_config().as_dict(), **change}
    with pytest.raises(error) as info:
        run_federated(values, tmp_path / "out", dataset=data)
    assert needle in str(info.value)
    assert not (tmp_path / "out").exists()
