"""Bottom-up pose (HigherHRNet) end to end on tiny generated COCO-format data: the training samples (affine,
flip, masks, tag targets), the official test resize, the loss, a short fit, the evaluation path with oracle
outputs through pycocotools, the shipped configs and the prediction CLI."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2
import lightning as L
import numpy as np
import pytest
import torch
import yaml
from pycocotools import mask as mask_utils

from hrnet.cli import main
from hrnet.keypoints.geometry import affine_points, get_affine_transform
from hrnet.keypoints.sets import COCO_KEYPOINTS, CROWDPOSE_KEYPOINTS, KeypointSpec
from hrnet.synthetic.people import make_synthetic_coco_keypoints
from hrnet.tasks.bottomup.data import BottomUpCoco, BottomUpDataModule, joint_indices
from hrnet.tasks.bottomup.decode import (
    joint_order,
    merged_maps,
    multi_scale_size,
    scaled_inputs,
)
from hrnet.tasks.bottomup.losses import ae_loss, heatmap_loss
from hrnet.tasks.bottomup.module import BottomUpPose

SMALL = "higher_hrnet_w18_small"


def _trainer(tmp_path: Path, **kwargs) -> L.Trainer:
    args = dict(accelerator="cpu", devices=1, max_epochs=1, limit_train_batches=2, limit_val_batches=2,
                logger=False, enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                default_root_dir=tmp_path)
    return L.Trainer(**{**args, **kwargs})


def _coco(root: Path, size_hw: tuple[int, int], people: list[np.ndarray], extra: list[dict] = ()) -> Path:
    """One black image with a 5x5 white dot on every labelled joint, and its COCO keypoints file."""
    image = np.zeros((*size_hw, 3), np.uint8)
    annotations = []
    for i, joints in enumerate(people):
        for x, y, v in joints:
            if v > 0:
                image[int(y) - 2:int(y) + 3, int(x) - 2:int(x) + 3] = 255
        annotations.append({"id": i + 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "bbox": [0, 0, 10, 10],
                            "area": 100.0, "keypoints": joints.reshape(-1).tolist(),
                            "num_keypoints": int((joints[:, 2] > 0).sum())})
    annotations += [{"id": len(annotations) + k + 1, "image_id": 1, "category_id": 1, **a} for k, a in enumerate(extra)]
    (root / "images").mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(root / "images" / "1.png"), image)
    data = {"images": [{"id": 1, "file_name": "1.png", "height": size_hw[0], "width": size_hw[1]}],
            "annotations": annotations, "categories": [{"id": 1, "name": "person"}]}
    (root / "ann.json").write_text(json.dumps(data))
    return root / "ann.json"


def _one_joint(j: int, x: float, y: float, num_joints: int = 17) -> np.ndarray:
    joints = np.zeros((num_joints, 3))
    joints[j] = (x, y, 2)
    return joints


# ------------------------------------------------------------------------------------------ training data
def test_random_affine_puts_the_heatmap_peak_on_the_joint(tmp_path) -> None:
    """A dot drawn on the left eye, through the official random affine (scale, rotation, translation, flip):
    the peak of the heatmap of the joint it became (the right eye when mirrored) sits on the dot in the warped
    input, at 1/4 and 1/2, within the official mirror's offset (``1 - r / S`` map pixels)."""
    ann = _coco(tmp_path, (150, 200), [_one_joint(1, 120, 60)])
    dataset = BottomUpCoco(ann_file=ann, img_dir=tmp_path / "images", train=True, input_size=128, seed=0)
    seen = set()
    for epoch in range(16):
        dataset.set_epoch(epoch)
        s = dataset[0]
        image = s["image"].numpy().mean(axis=0)
        ys, xs = np.nonzero(image > 1.0)
        if s["heatmaps"][1:3].max() == 0:  # the joint left the input (perhaps not all of its dot)
            assert len(xs) < 25 or min(xs.min(), ys.min()) < 4 or max(xs.max(), ys.max()) > 123, epoch
            continue
        dot = np.array([xs.mean(), ys.mean()])
        mirrored = bool(s["heatmaps"][2].max() > 0)
        seen.add(mirrored)
        assert s["heatmaps"][1 if not mirrored else 2].max() == 1.0
        assert s["heatmaps"][[j for j in range(17) if j != (2 if mirrored else 1)]].max() == 0
        for key, stride in (("heatmaps", 4), ("heatmaps_2x", 2)):
            y, x = divmod(int(s[key][2 if mirrored else 1].argmax()), s[key].shape[2])
            slack = 1.0 + (1 - 1 / stride) * mirrored
            assert abs(x - dot[0] / stride) <= slack + 0.25 and abs(y - dot[1] / stride) <= 1.25, (epoch, key)
        index = int(s["joints"][0, 0, 0])
        assert index // 32 ** 2 == (2 if mirrored else 1) and s["joints"][0, 0, 1] == 1
        assert s["joints"][0, 1:, 1].sum() == 0 and s["joints"][1:, :, 1].sum() == 0
    assert seen == {False, True}


def test_mask_covers_crowds_and_people_without_keypoints(tmp_path) -> None:
    """Without augmentation the input is the whole (square) image: the crowd's RLE and the unlabelled person's
    polygon are 0 in the mask at both resolutions, the rest 1."""
    crowd = np.zeros((128, 128), np.uint8)
    crowd[8:40, 64:120] = 1
    rle = mask_utils.encode(np.asfortranarray(crowd))
    extra = [{"iscrowd": 1, "bbox": [64, 8, 56, 32], "area": 1792.0, "num_keypoints": 0,
              "segmentation": {"size": [128, 128], "counts": rle["counts"].decode("ascii")}},
             {"iscrowd": 0, "bbox": [8, 80, 32, 40], "area": 1280.0, "num_keypoints": 0,
              "segmentation": [[8, 80, 40, 80, 40, 120, 8, 120]]}]
    ann = _coco(tmp_path, (128, 128), [_one_joint(0, 60, 60)], extra)
    plain = dict(min_scale=1.0, max_scale=1.0, max_rotation=0.0, max_translate=0.0, flip=0.0)
    s = BottomUpCoco(ann_file=ann, img_dir=tmp_path / "images", train=True, input_size=128, seed=0, **plain)[0]
    for key, stride in (("mask", 4), ("mask_2x", 2)):
        mask = s[key].numpy()
        assert mask[12 // stride:36 // stride, 68 // stride:116 // stride].max() == 0  # the crowd
        assert mask[84 // stride:116 // stride, 12 // stride:36 // stride].max() == 0  # the unlabelled person
        assert mask[:8 // stride].min() == 1 and mask[48 // stride:76 // stride].min() == 1  # no region there
        assert mask[84 // stride:116 // stride, 48 // stride:].min() == 1
    assert s["heatmaps"][0].max() == 1.0 and s["joints"][:, :, 1].sum() == 1


def test_beyond_max_num_people_the_rest_get_no_tag_rows(tmp_path, caplog, monkeypatch) -> None:
    """35 people in view: 30 tag rows (annotation order), the 5 others dropped with one warning per process;
    every one keeps its heatmap peak."""
    monkeypatch.setattr(logging.getLogger("hrnet"), "propagate", True)  # the CLI's console setup turns it off
    monkeypatch.setattr(logging.getLogger("hrnet"), "handlers", [])  # and adds its own handler
    people = [_one_joint(j % 17, 10 + 20 * (j % 6), 10 + 20 * (j // 6)) for j in range(35)]
    ann = _coco(tmp_path, (128, 128), people)
    plain = dict(min_scale=1.0, max_scale=1.0, max_rotation=0.0, max_translate=0.0, flip=0.0)
    dataset = BottomUpCoco(ann_file=ann, img_dir=tmp_path / "images", train=True, input_size=128, seed=0, **plain)
    with caplog.at_level(logging.WARNING, logger="hrnet.tasks.bottomup.data"):
        s = dataset[0]
        dataset[0]
    assert [r.getMessage().count("5 of them get no tag target") for r in caplog.records] == [1]
    assert s["joints"].shape == (30, 17, 2) and (s["joints"][:, 0, 1] == 1).all() and s["joints"][:, 1:, 1].sum() == 0
    assert int((s["heatmaps"].flatten(1).max(dim=1).values == 1).sum()) == 17
    rows, dropped = joint_indices(np.array(people) / 4, 32)
    assert dropped == 5 and rows[29, 0, 0] == (29 % 17) * 32 * 32 + (10 + 20 * 4) // 4 * 32 + (10 + 20 * 5) // 4


def test_custom_keypoint_set_and_crowdpose_flip_order(tmp_path) -> None:
    """A keypoint set spelled out in the config (5 joints) gives 5 heatmaps and a 5-joint model; CrowdPose's
    flip index is the official FLIP_CONFIG['CROWDPOSE'] and its grouping order the official one cut to 14."""
    spec = KeypointSpec.from_dict({"name": "face5", "joint_names": list(COCO_KEYPOINTS.joint_names[:5]),
                                   "flip_pairs": [[1, 2], [3, 4]], "sigmas": list(COCO_KEYPOINTS.sigmas[:5])})
    ann = make_synthetic_coco_keypoints(tmp_path, split="val", num_images=2, image_size=(96, 96), seed=0,
                                        keypoints=spec)
    s = BottomUpCoco(ann_file=ann, img_dir=tmp_path / "val", train=True, keypoints=spec, input_size=64, seed=0)[0]
    assert s["heatmaps"].shape == (5, 16, 16) and s["joints"].shape == (30, 5, 2)
    task = BottomUpPose(model=SMALL, keypoints={"name": "face5", "joint_names": list(spec.joint_names),
                                                "flip_pairs": [[1, 2], [3, 4]]}, input_size=(64, 64))
    assert [tuple(o.shape) for o in task(torch.zeros(1, 3, 64, 64))] == [(1, 10, 16, 16), (1, 5, 32, 32)]
    assert CROWDPOSE_KEYPOINTS.flip_index == [1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 12, 13]
    assert joint_order(14) == (0, 1, 2, 3, 4, 5, 6, 11, 12, 7, 8, 9, 10, 13) and joint_order(9) == tuple(range(9))
    with pytest.raises(ValueError, match="keypoints is not a list of 3\\*K=51 numbers"):
        BottomUpCoco(ann_file=ann, img_dir=tmp_path / "val", train=True, input_size=64)


# ------------------------------------------------------------------------------------------- test inputs
def test_official_test_resize() -> None:
    """Short side to the input size, the long one to the multiple of 64 above (official ``get_multi_scale_size``;
    with scales down to 0.5 everything is first sized at 0.5)."""
    size, center, scale = multi_scale_size(480, 640, 512, 1.0, 1.0)
    assert size == (704, 512) and center.tolist() == [320, 240] and np.allclose(scale, (3.3, 2.4))
    assert multi_scale_size(640, 480, 512, 1.0, 1.0)[0] == (512, 704)
    assert multi_scale_size(480, 640, 512, 1.0, 0.5)[0] == (768, 512)
    inputs = scaled_inputs(np.zeros((480, 640, 3), np.uint8), 512, (0.5, 2.0, 1.0))
    assert inputs.scales == (2.0, 1.0, 0.5) and inputs.base_size == (768, 512)
    assert [x.shape for x in inputs.images] == [(3, 1024, 1536), (3, 512, 768), (3, 256, 384)]
    with pytest.raises(ValueError, match="must include 1.0"):
        scaled_inputs(np.zeros((48, 64, 3), np.uint8), 64, (0.5, 2.0))


def test_multi_scale_maps_average_heatmaps_and_take_scale_one_tags() -> None:
    """A network whose outputs hold its input's height: the merged heatmaps are the mean over the scales of
    both outputs, resized to the scale-1 input; the tags are scale 1's (official ``aggregate_results``)."""
    def network(x: torch.Tensor) -> list[torch.Tensor]:
        h, w = x.shape[2:]
        return [torch.full((1, 4, h // 4, w // 4), float(h)), torch.full((1, 2, h // 2, w // 2), float(h))]

    inputs = scaled_inputs(np.zeros((64, 96, 3), np.uint8), 128, (1.0, 2.0, 0.5))
    assert [x.shape[1:] for x in inputs.images] == [(256, 512), (128, 256), (64, 128)]
    heatmaps, tags = merged_maps(network, inputs, num_joints=2, flip_index=[1, 0])
    assert heatmaps.shape == (2, 128, 256) and tags.shape == (2, 128, 256, 2)
    torch.testing.assert_close(heatmaps, torch.full_like(heatmaps, (256 + 128 + 64) / 3))
    torch.testing.assert_close(tags, torch.full_like(tags, 128.0))



def test_maps_without_project2image_stay_at_the_largest_scales_half_resolution() -> None:
    """Official ``TEST.PROJECT2IMAGE`` off: the heatmaps of every scale resized to the first (largest)
    scale's 1/2 output and averaged, scale 1's tags resized to it; the people map back through that size."""
    def network(x: torch.Tensor) -> list[torch.Tensor]:
        h, w = x.shape[2:]
        return [torch.full((1, 4, h // 4, w // 4), float(h)), torch.full((1, 2, h // 2, w // 2), float(h))]

    inputs = scaled_inputs(np.zeros((64, 96, 3), np.uint8), 128, (1.0, 2.0, 0.5))
    heatmaps, tags = merged_maps(network, inputs, num_joints=2, flip_index=[1, 0], project2image=False)
    assert heatmaps.shape == (2, 128, 256) and tags.shape == (2, 128, 256, 2)  # 2.0 x the 1/2 of 128 x 256
    torch.testing.assert_close(heatmaps, torch.full_like(heatmaps, (256 + 128 + 64) / 3))
    torch.testing.assert_close(tags, torch.full_like(tags, 128.0))
    single = scaled_inputs(np.zeros((64, 96, 3), np.uint8), 128)
    heatmaps, tags = merged_maps(network, single, num_joints=2, project2image=False)
    assert heatmaps.shape == (2, 64, 96) and tags.shape == (2, 64, 96, 1)
    assert merged_maps(network, single, num_joints=2)[0].shape == (2, 128, 192)

# ---------------------------------------------------------------------------------------------- the loss
def test_module_loss_is_the_official_combination() -> None:
    """Heatmap MSE at both resolutions (weight 1) + 1e-3 x (push + pull) on the 1/4 tags, batch means."""
    torch.manual_seed(0)
    task = BottomUpPose(model=SMALL, input_size=(64, 64))
    low, high = torch.rand(2, 34, 16, 16), torch.rand(2, 17, 32, 32)
    joints = torch.zeros(2, 30, 17, 2, dtype=torch.long)
    joints[:, 0, :3, 0], joints[:, 1, :2, 0] = torch.tensor([5, 300, 900]), torch.tensor([40, 700])
    joints[:, 0, :3, 1], joints[:, 1, :2, 1] = 1, 1
    batch = {"heatmaps": torch.rand(2, 17, 16, 16), "heatmaps_2x": torch.rand(2, 17, 32, 32),
             "mask": (torch.rand(2, 16, 16) > 0.3).float(), "mask_2x": torch.ones(2, 32, 32), "joints": joints}
    losses = task.losses([low, high], batch)
    push, pull = ae_loss(low[:, 17:], joints)
    expected = (heatmap_loss(low[:, :17], batch["heatmaps"], batch["mask"]).mean()
                + heatmap_loss(high, batch["heatmaps_2x"], batch["mask_2x"]).mean() + 1e-3 * (push.mean() + pull.mean()))
    torch.testing.assert_close(losses["loss"], expected)
    assert float(push.mean()) > 0 and float(pull.mean()) > 0
    torch.testing.assert_close(losses["push"] + losses["pull"], 1e-3 * (push.mean() + pull.mean()))


# ------------------------------------------------------------------------------------------------ fitting
@pytest.fixture(scope="module")
def crowd_of_people(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("people")
    out = {}
    for split, seed in (("train", 0), ("val", 1)):
        ann = make_synthetic_coco_keypoints(root, split=split, num_images=6, image_size=(256, 256),
                                            persons_per_image=(2, 4), seed=seed, difficulty=0.3)
        out[f"{split}_ann"], out[f"{split}_images"] = str(ann), str(root / split)
    return out


def test_two_step_fit_and_validation(crowd_of_people, tmp_path) -> None:
    L.seed_everything(0)
    dm = BottomUpDataModule(**crowd_of_people, input_size=(64, 64), batch_size=2, num_workers=0)
    task = BottomUpPose(model=SMALL, input_size=(64, 64), lr_steps=(5,))
    trainer = _trainer(tmp_path)
    trainer.fit(task, datamodule=dm)
    assert trainer.global_step == 2
    assert set(task.last_metrics) >= {"AP", "AP50", "AP75", "APm", "AR"}
    assert all(np.isfinite(v) for v in task.last_metrics.values())


class Oracle(torch.nn.Module):
    """A 'network' that answers the image it was given with ground-truth maps: Gaussians (sigma 2) on the joints
    at 1/4 and 1/2, tags ``2 * person + 1`` around each joint at 1/4; the mirrored image gets the mirrored maps
    with left and right swapped (a flip-equivariant network)."""

    def __init__(self, flip_index: list[int]) -> None:
        super().__init__()
        self.flip_index, self.image, self.maps = flip_index, None, None

    def show(self, image: torch.Tensor, joints: np.ndarray) -> None:
        """The input ``(1, 3, H, W)`` and its people's joints ``(P, J, 3)`` in input pixels."""
        h, w = image.shape[2:]
        j = joints.shape[1]
        low, high = torch.zeros(1, 2 * j, h // 4, w // 4), torch.zeros(1, j, h // 2, w // 2)
        for stride, maps in ((4, low), (2, high)):
            ys, xs = torch.meshgrid(torch.arange(h // stride), torch.arange(w // stride), indexing="ij")
            for p, person in enumerate(joints):
                for k, (x, y, v) in enumerate(person):
                    if v <= 0:
                        continue
                    cx, cy = (x + 0.5) / stride - 0.5, (y + 0.5) / stride - 0.5  # align_corners=False grids
                    d2 = (xs - cx) ** 2 + (ys - cy) ** 2
                    maps[0, k] = torch.maximum(maps[0, k], torch.exp(-d2 / 8))
                    if stride == 4:
                        maps[0, j + k][d2 <= 9] = 2.0 * p + 1
        self.image, self.maps = image, (low, high)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if torch.equal(x, self.image):
            return list(self.maps)
        assert torch.equal(x, self.image.flip(3))
        j, (low, high) = len(self.flip_index), self.maps
        channels = self.flip_index + [j + i for i in self.flip_index]
        return [low.flip(3)[:, channels], high.flip(3)[:, self.flip_index]]


@pytest.mark.parametrize("project2image", [True, False])
def test_oracle_outputs_give_ap_above_095(crowd_of_people, tmp_path, project2image) -> None:
    """Ground-truth maps and perfect tags through the module's evaluation (flip test, grouping, mapping back,
    20 people an image, pycocotools): AP >= 0.95, on maps resized to the input or not; the same maps moved by
    3 input pixels score lower."""
    dm = BottomUpDataModule(val_ann=crowd_of_people["val_ann"], val_images=crowd_of_people["val_images"],
                            input_size=(256, 256), num_workers=0)
    dm.setup("validate")
    task = BottomUpPose(model=SMALL, input_size=(256, 256), project2image=project2image)
    task.trainer = _trainer(tmp_path)
    task.trainer.datamodule = dm
    oracle = Oracle(COCO_KEYPOINTS.flip_index)
    task.model = oracle
    for shift in (0.0, 3.0):
        for batch in dm.val_dataloader():
            record = dm.val_set.records[int(batch["index"][0])]
            matrix = get_affine_transform(batch["center"][0].numpy(), batch["scale"][0].numpy(), 0.0,
                                          batch["base_size"][0].tolist())
            joints = record.joints.copy()
            joints[..., :2] = affine_points(joints[..., :2], matrix).reshape(joints[..., :2].shape) + shift
            oracle.show(batch["images"][0][0][None], joints)
            task._evaluate_batch(batch)
        predictions, task._predictions = task._predictions, []
        assert len(predictions) == len(dm.val_set) and max(len(p["scores"]) for p in predictions) >= 2
        metrics = task.evaluate(predictions, "val")
        if shift == 0.0:
            assert metrics["AP"] >= 0.95, metrics
        else:
            assert metrics["AP"] < 0.9, metrics


# ----------------------------------------------------------------------------------- configs, CLI, predict
@pytest.mark.parametrize("config", sorted(Path("configs/bottomup").glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_configs_instantiate(config: Path) -> None:
    from hrnet.tasks.lightning_cli import TaskCLI
    from hrnet.tasks.registry import TASKS

    cli = TaskCLI(TASKS["bottomup"], args=["--config", str(config), "--model.pretrained", "null"], run=False)
    raw = yaml.safe_load(config.read_text())
    assert cli.model.hparams.model == raw["model"]["model"]
    assert tuple(cli.datamodule.hparams.input_size) == tuple(raw["model"]["input_size"])
    assert cli.model.keypoints.num_joints == {"coco": 17, "crowdpose": 14}[raw["model"]["keypoints"]]
    assert cli.datamodule.hparams.max_num_people == raw["model"]["max_num_people"] == 30


def _xtcocotools_fails_to_import(monkeypatch, error: Exception) -> None:
    """Make every ``import xtcocotools...`` raise ``error`` (as a missing package or a binary mismatch would)."""
    import importlib.abc
    import sys

    class Refuse(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "xtcocotools" or name.startswith("xtcocotools."):
                raise error

    for name in [m for m in sys.modules if m == "xtcocotools" or m.startswith("xtcocotools.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "meta_path", [Refuse(), *sys.meta_path])


def test_crowdpose_evaluation_needs_xtcocotools(monkeypatch) -> None:
    """Not installed: how to install it (under numpy 2: built from source, the PyPI wheel being built against
    numpy 1)."""
    from hrnet.keypoints.evaluation import XTCOCOTOOLS_FROM_SOURCE, require_xtcocotools

    _xtcocotools_fails_to_import(monkeypatch, ModuleNotFoundError("No module named 'xtcocotools'"))
    monkeypatch.setattr("importlib.util.find_spec", lambda name, package=None: None)
    with pytest.raises(ValueError, match="keypoints_crowd.* needs xtcocotools") as err:
        require_xtcocotools()
    assert "\n" not in str(err.value)
    if int(np.__version__.split(".")[0]) >= 2:
        assert str(err.value).endswith(XTCOCOTOOLS_FROM_SOURCE)
    else:
        assert str(err.value).endswith("pip install xtcocotools")


def test_crowdpose_evaluation_with_the_numpy1_wheel_names_the_rebuild(monkeypatch) -> None:
    """The PyPI xtcocotools wheel under numpy 2 raises numpy's binary-incompatibility ValueError on import; the
    user gets one line that names the rebuild from source."""
    from hrnet.keypoints.evaluation import crowd_keypoint_eval, require_xtcocotools

    numpy_says = ("numpy.dtype size changed, may indicate binary incompatibility. Expected 96 from C header, "
                  "got 88 from PyObject")
    _xtcocotools_fails_to_import(monkeypatch, ValueError(numpy_says))
    fix = ("pip install cython && pip install --no-build-isolation --no-binary xtcocotools --force-reinstall "
           "--no-deps xtcocotools")
    for call in (require_xtcocotools, lambda: crowd_keypoint_eval(*_crowdpose_gt_and_oracle(), CROWD_SIGMAS)):
        with pytest.raises(ValueError, match="xtcocotools is installed but does not import") as err:
            call()
        message = str(err.value)
        assert "\n" not in message and numpy_says in message and message.endswith(fix), message


# ------------------------------------------------------------------------- CrowdPose evaluation (xtcocotools)
CROWD_SIGMAS = CROWDPOSE_KEYPOINTS.sigmas
# Two images at each difficulty, at crowd indices well inside xtcocotools' bins (see below).
CROWD_INDEX = {1: 0.05, 2: 0.05, 3: 0.5, 4: 0.5, 5: 0.9, 6: 0.9}


def _crowdpose_person(rng: np.random.Generator, x0: float, y0: float) -> np.ndarray:
    """(14, 3): a person of about 60 x 120 pixels at (x0, y0), CrowdPose's joint order roughly (shoulders,
    elbows, wrists, hips, knees, ankles, head top, neck); the left wrist unlabelled (v 0, x = y = 0)."""
    layout = np.array([[15, 30], [45, 30], [10, 55], [50, 55], [8, 75], [52, 75], [20, 70], [40, 70],
                       [18, 95], [42, 95], [17, 118], [43, 118], [30, 2], [30, 22]], np.float64)
    joints = np.concatenate([layout + [x0, y0] + rng.uniform(-2, 2, layout.shape), np.full((14, 1), 2.0)], 1)
    joints[4] = 0
    return joints


def _crowdpose_gt_and_oracle(crowd_index: dict[int, float] | None = None, seed: int = 0) -> tuple[dict, list]:
    """A ground truth as CrowdPose ships it (crowdpose_{train,val,test}.json): ``images`` with ``crowdIndex``,
    one ``person`` category with the 14 keypoint names and skeleton, annotations with 14 * 3 keypoints,
    ``num_keypoints``, ``bbox``, ``iscrowd`` 0 and no ``area``; two people an image. And its oracle results
    (the ground-truth keypoints, score 1)."""
    rng = np.random.default_rng(seed)
    crowd_index = CROWD_INDEX if crowd_index is None else crowd_index
    images, annotations, results = [], [], []
    for image_id, index in crowd_index.items():
        images.append({"file_name": f"{100000 + image_id}.jpg", "id": image_id, "height": 240, "width": 320,
                       "crowdIndex": index})
        for x0 in (20.0, 170.0):
            joints = _crowdpose_person(rng, x0, 40.0 + 20 * rng.random())
            labelled = joints[joints[:, 2] > 0]
            x, y = labelled[:, 0], labelled[:, 1]
            bbox = [float(x.min()), float(y.min()), float(x.max() - x.min()), float(y.max() - y.min())]
            annotations.append({"num_keypoints": len(labelled), "iscrowd": 0, "bbox": bbox,
                                "keypoints": joints.reshape(-1).tolist(), "image_id": image_id,
                                "category_id": 1, "id": len(annotations) + 1})
            results.append({"image_id": image_id, "category_id": 1, "keypoints": joints.reshape(-1).tolist(),
                            "score": 1.0})
    categories = [{"supercategory": "person", "id": 1, "name": "person",
                   "keypoints": list(CROWDPOSE_KEYPOINTS.joint_names),
                   "skeleton": [[13, 14], [14, 1], [14, 2], [1, 3], [3, 5], [2, 4], [4, 6], [1, 7], [2, 8],
                                [7, 9], [9, 11], [8, 10], [10, 12]]}]
    return {"images": images, "annotations": annotations, "categories": categories}, results


def _shifted(results: list[dict], image_ids: set[int], by: float = 30.0) -> list[dict]:
    """The results with every keypoint of the given images moved by ``by`` pixels right and down."""
    out = []
    for r in results:
        kps = np.asarray(r["keypoints"], np.float64).reshape(-1, 3)
        if r["image_id"] in image_ids:
            kps[:, :2] += by
        out.append({**r, "keypoints": kps.reshape(-1).tolist()})
    return out


def test_crowdpose_evaluation_of_the_ground_truth_is_perfect() -> None:
    """CrowdPose's benchmark (xtcocotools ``keypoints_crowd``, really run) of the ground truth itself: AP, AP
    easy, medium and hard are 1 (and AR 1); the stats come back under :data:`CROWD_STAT_NAMES`."""
    pytest.importorskip("xtcocotools.cocoeval")
    from hrnet.keypoints.evaluation import CROWD_STAT_NAMES, crowd_keypoint_eval

    gt, oracle = _crowdpose_gt_and_oracle()
    metrics = crowd_keypoint_eval(gt, oracle, CROWD_SIGMAS)
    assert tuple(metrics) == CROWD_STAT_NAMES
    for name in ("AP", "AP50", "AP75", "AR", "AP_easy", "AP_medium", "AP_hard"):
        assert metrics[name] == pytest.approx(1.0, abs=1e-6), (name, metrics)
    assert "crowdIndex" in gt["images"][0] and len(oracle) == 12  # the caller's data is left alone


def test_crowdpose_hard_images_wrong_lower_only_ap_hard() -> None:
    """The hard images' people 30 pixels off (OKS about 0), the others exact: AP easy and medium stay 1, AP hard
    and the overall AP fall. This checks independently that AP_easy / AP_medium / AP_hard are where the names say
    (xtcocotools returns a bare 9-vector)."""
    pytest.importorskip("xtcocotools.cocoeval")
    from hrnet.keypoints.evaluation import crowd_keypoint_eval

    gt, oracle = _crowdpose_gt_and_oracle()
    hard = {i for i, c in CROWD_INDEX.items() if c == 0.9}
    metrics = crowd_keypoint_eval(gt, _shifted(oracle, hard), CROWD_SIGMAS)
    assert metrics["AP_easy"] == pytest.approx(1.0, abs=1e-6), metrics
    assert metrics["AP_medium"] == pytest.approx(1.0, abs=1e-6), metrics
    assert metrics["AP_hard"] < 0.1, metrics
    assert 0.3 < metrics["AP"] < 0.9 and metrics["AR"] < 0.9, metrics
    medium = {i for i, c in CROWD_INDEX.items() if c == 0.5}
    metrics = crowd_keypoint_eval(gt, _shifted(oracle, medium), CROWD_SIGMAS)
    assert metrics["AP_medium"] < 0.1 and metrics["AP_easy"] == metrics["AP_hard"] == pytest.approx(1.0), metrics


@pytest.mark.parametrize(("crowd_index", "difficulty"),
                         [(0.19, "easy"), (0.2, "medium"), (0.79, "medium"), (0.8, "hard")])
def test_crowdpose_difficulty_bins_are_xtcocotools(crowd_index: float, difficulty: str) -> None:
    """The bins of xtcocotools 1.14 (``cocoeval.py``: ``_summarizeKps_crowd`` calls
    ``get_type_result(first=0.2, second=0.8)``, whose ``split`` puts an image in easy if ``crowdIndex < first``,
    else in medium if ``crowdIndex < second``, else in hard): easy ``< 0.2``, medium ``0.2 <= c < 0.8``, hard
    ``>= 0.8``. One more image at ``crowd_index`` with its people off lowers exactly its bin's AP."""
    pytest.importorskip("xtcocotools.cocoeval")
    from hrnet.keypoints.evaluation import crowd_keypoint_eval

    gt, oracle = _crowdpose_gt_and_oracle({**CROWD_INDEX, 7: crowd_index})
    metrics = crowd_keypoint_eval(gt, _shifted(oracle, {7}), CROWD_SIGMAS)
    for name in ("easy", "medium", "hard"):
        if name == difficulty:
            assert metrics[f"AP_{name}"] < 0.9, (name, metrics)
        else:
            assert metrics[f"AP_{name}"] == pytest.approx(1.0, abs=1e-6), (name, metrics)


def test_crowdpose_image_without_crowd_index_is_one_line_error() -> None:
    pytest.importorskip("xtcocotools.cocoeval")
    from hrnet.keypoints.evaluation import crowd_keypoint_eval

    gt, oracle = _crowdpose_gt_and_oracle()
    del gt["images"][3]["crowdIndex"]
    with pytest.raises(ValueError, match=r"^crowdpose_val.json: image id 4 has no 'crowdIndex'") as err:
        crowd_keypoint_eval(gt, oracle, CROWD_SIGMAS, where="crowdpose_val.json")
    assert "\n" not in str(err.value)


def test_crowdpose_module_evaluation_reports_the_difficulties(tmp_path) -> None:
    """``keypoints: crowdpose`` through the data module and :meth:`BottomUpPose.evaluate` (ground-truth people as
    the predictions; no network run, no image read): the xtcocotools stats, AP easy / medium / hard 1."""
    pytest.importorskip("xtcocotools.cocoeval")
    gt, _ = _crowdpose_gt_and_oracle()
    (tmp_path / "crowdpose_val.json").write_text(json.dumps(gt))
    dm = BottomUpDataModule(val_ann=str(tmp_path / "crowdpose_val.json"), val_images=str(tmp_path),
                            keypoints="crowdpose", input_size=(64, 64), num_workers=0)
    dm.setup("validate")
    task = BottomUpPose(model=SMALL, keypoints="crowdpose", input_size=(64, 64))
    assert task.crowd_eval
    task.trainer = _trainer(tmp_path)
    task.trainer.datamodule = dm
    predictions = [{"image_id": r.image_id, "index": i, "keypoints": r.joints.copy(),
                    "scores": [1.0] * len(r.joints)} for i, r in enumerate(dm.val_set.records)]
    metrics = task.evaluate(predictions, "val")
    assert {"AP", "AR", "AP_easy", "AP_medium", "AP_hard"} <= set(metrics), metrics
    for name in ("AP", "AP_easy", "AP_medium", "AP_hard"):
        assert metrics[name] == pytest.approx(1.0, abs=1e-6), (name, metrics)


def _plateau_checkpoint(tmp_path: Path) -> Path:
    """A small bottom-up checkpoint at input 64 whose outputs are its biases (zero last layers): heatmaps 0.5
    everywhere, tags 0."""
    task = BottomUpPose(model=SMALL, input_size=(64, 64))
    for layer, bias in zip(task.model.head.final_layers, ([0.5] * 17 + [0.0] * 17, [0.5] * 17)):
        torch.nn.init.zeros_(layer.weight)
        layer.bias.data = torch.tensor(bias)
    trainer = _trainer(tmp_path, max_steps=0)
    trainer.strategy.connect(task)
    ckpt = tmp_path / "bottomup.ckpt"
    trainer.save_checkpoint(ckpt)
    return ckpt


def test_predict_cli_writes_people_and_a_picture(tmp_path, capsys) -> None:
    """A checkpoint whose heatmaps are 0.5 everywhere and tags 0 finds 30 people (the most the grouping keeps);
    ``keypoints.json`` has them with keypoints, box and score, the picture is drawn, ``--no-project2image``
    groups on the 1/2-resolution maps; ``--boxes`` is refused."""
    ckpt = _plateau_checkpoint(tmp_path)
    (tmp_path / "in").mkdir()
    cv2.imwrite(str(tmp_path / "in" / "a.jpg"), np.random.default_rng(0).integers(0, 255, (60, 90, 3), np.uint8))
    assert main(["predict", str(tmp_path / "in"), "--weights", str(ckpt), "--out", str(tmp_path / "out")]) == 0
    result = json.loads((tmp_path / "out" / "keypoints.json").read_text())
    assert result["keypoints"] == list(COCO_KEYPOINTS.joint_names) and result["images"][0]["file"] == "a.jpg"
    persons = result["images"][0]["persons"]
    assert len(persons) == 30 and all(len(p["keypoints"]) == 51 and len(p["box"]) == 4 for p in persons)
    assert all(p["score"] == pytest.approx(0.5, abs=1e-3) for p in persons)
    assert (tmp_path / "out" / "a_pose.jpg").is_file()
    # Plateau maps: the 30 peaks are the first pixels of the top map row. The 128 x 64 input covers 120 x 60
    # image pixels from x = -15 (official resize of 90 x 60), so on 1/2-resolution maps (--no-project2image)
    # the joints reach twice as far from x = -15.
    assert main(["predict", str(tmp_path / "in"), "--weights", str(ckpt), "--no-project2image",
                 "--out", str(tmp_path / "half")]) == 0
    half = json.loads((tmp_path / "half" / "keypoints.json").read_text())["images"][0]["persons"]
    reach = [max(max(p["keypoints"][0::3]) for p in people) for people in (persons, half)]
    assert len(half) == 30 and reach[1] + 15 == pytest.approx(2 * (reach[0] + 15), abs=0.02)
    assert main(["predict", str(tmp_path / "in"), "--weights", str(ckpt), "--boxes", str(tmp_path / "b.json"),
                 "--out", str(tmp_path / "out")]) == 2
    assert "--boxes applies to top-down models" in capsys.readouterr().err


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_exported_model_predicts_the_same_people(tmp_path, backend) -> None:
    """``hrnet export onnx`` of a bottom-up checkpoint keeps its settings, and ``hrnet predict`` through
    onnxruntime (the ONNX file) or OpenVINO (the checkpoint) finds the people PyTorch finds. The network's
    outputs are its biases (zero last layers), so every backend computes the same maps exactly."""
    pytest.importorskip(backend)
    ckpt = _plateau_checkpoint(tmp_path)
    (tmp_path / "in").mkdir()
    cv2.imwrite(str(tmp_path / "in" / "a.jpg"), np.random.default_rng(1).integers(0, 255, (70, 50, 3), np.uint8))
    weights = ckpt
    if backend == "onnxruntime":
        from hrnet.export import OnnxModel

        weights = tmp_path / "bottomup.onnx"
        assert main(["export", "onnx", "--weights", str(ckpt), "--out", str(weights)]) == 0
        settings = OnnxModel(weights).settings
        assert settings["keypoints"] == "coco" and settings["input_size"] == [64, 64] and settings["project2image"]
    runs = {}
    for name, argv in (("torch", ["--weights", str(ckpt), "--backend", "torch"]),
                       (backend, ["--weights", str(weights), "--backend", backend])):
        assert main(["predict", str(tmp_path / "in"), *argv, "--out", str(tmp_path / name)]) == 0
        runs[name] = json.loads((tmp_path / name / "keypoints.json").read_text())["images"][0]["persons"]
    assert len(runs["torch"]) == 30 and runs[backend] == runs["torch"]
