"""The task table: the one place that names the tasks with a pipeline (after ultralytics' ``task_map``).

``hrnet predict``, ``hrnet fit|validate|test``, ``hrnet demo`` and ``hrnet export`` read :data:`TASKS`;
nothing else in the package lists tasks. A task's classes are imported when it is used, so building the
command line does not import Lightning. Presets name their task with the same identifiers
(``Preset.task``); a preset whose task has no entry here would still build, load checkpoints and export, and
the commands that need a pipeline would say which tasks have one.

Adding a task: its folder under ``tasks/``, one :class:`Task` entry below, its demo, configs and tests.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Task:
    """What the commands need to know of one task.

    Args:
        name: the identifier presets use (``Preset.task``), the folder name and ``hrnet demo --task``.
        summary: one line for ``--help``.
        lightning: ``() -> (LightningModule class, LightningDataModule class)`` for ``hrnet fit|validate|test``.
        predictor: ``() -> Predictor subclass`` (:class:`hrnet.tasks.base.Predictor`) for ``hrnet predict``;
            its ``add_arguments`` adds the task's flags, ``from_args`` builds it.
        settings: checkpoint hyper-parameters prediction needs besides the weights; exported files carry them.
        linked: ``model.X`` arguments the Lightning CLI copies to ``data.X`` (one value, two places).
        exports: the export formats that apply (``hrnet export``).
        demo: ``() -> (config dataclass, run(out, config, resume) -> metrics)`` for ``hrnet demo``.
        demo_out: the demo's default output folder.
    """

    name: str
    summary: str
    lightning: Callable[[], tuple[type, type]]
    predictor: Callable[[], type]
    settings: tuple[str, ...] = ()
    linked: tuple[str, ...] = ()
    exports: tuple[str, ...] = ("onnx", "openvino")
    demo: Callable[[], tuple[type, Callable[..., dict[str, Any]]]] | None = None
    demo_out: str = "runs/demo"


def _pose_lightning() -> tuple[type, type]:
    from .pose.data import PoseDataModule
    from .pose.module import PoseEstimation

    return PoseEstimation, PoseDataModule


def _pose_predictor() -> type:
    from .pose.predict import PosePredictor

    return PosePredictor


def _pose_demo() -> tuple[type, Callable[..., dict[str, Any]]]:
    from ..demos.pose import PoseDemoConfig, run_pose_demo

    return PoseDemoConfig, run_pose_demo


def _segmentation_lightning() -> tuple[type, type]:
    from .segmentation.data import SegDataModule
    from .segmentation.module import Segmentation

    return Segmentation, SegDataModule


def _segmentation_predictor() -> type:
    from .segmentation.predict import SegPredictor

    return SegPredictor


def _segmentation_demo() -> tuple[type, Callable[..., dict[str, Any]]]:
    from ..demos.segmentation import SegDemoConfig, run_seg_demo

    return SegDemoConfig, run_seg_demo


def _detection_lightning() -> tuple[type, type]:
    from .detection.data import DetectionDataModule
    from .detection.module import Detection

    return Detection, DetectionDataModule


def _detection_predictor() -> type:
    from .detection.predict import DetectionPredictor

    return DetectionPredictor


def _detection_demo() -> tuple[type, Callable[..., dict[str, Any]]]:
    from ..demos.detection import DetectionDemoConfig, run_detection_demo

    return DetectionDemoConfig, run_detection_demo


def _face_lightning() -> tuple[type, type]:
    from .face.data import FaceDataModule
    from .face.module import FaceLandmarkDetection

    return FaceLandmarkDetection, FaceDataModule


def _face_predictor() -> type:
    from .face.predict import FacePredictor

    return FacePredictor


def _face_demo() -> tuple[type, Callable[..., dict[str, Any]]]:
    from ..demos.face import FaceDemoConfig, run_face_demo

    return FaceDemoConfig, run_face_demo


def _bottomup_lightning() -> tuple[type, type]:
    from .bottomup.data import BottomUpDataModule
    from .bottomup.module import BottomUpPose

    return BottomUpPose, BottomUpDataModule


def _bottomup_predictor() -> type:
    from .bottomup.predict import BottomUpPredictor

    return BottomUpPredictor


def _bottomup_demo() -> tuple[type, Callable[..., dict[str, Any]]]:
    from ..demos.bottomup import BottomUpDemoConfig, run_bottomup_demo

    return BottomUpDemoConfig, run_bottomup_demo


def _classification_lightning() -> tuple[type, type]:
    from .classification.data import ClassificationDataModule
    from .classification.module import ImageClassification

    return ImageClassification, ClassificationDataModule


def _classification_predictor() -> type:
    from .classification.predict import ClassificationPredictor

    return ClassificationPredictor


def _classification_demo() -> tuple[type, Callable[..., dict[str, Any]]]:
    from ..demos.classification import ClassificationDemoConfig, run_classification_demo

    return ClassificationDemoConfig, run_classification_demo


TASKS: dict[str, Task] = {task.name: task for task in (
    Task("pose", "top-down human pose (HRNetV1): COCO / MPII keypoints, OKS AP, PCKh",
         _pose_lightning, _pose_predictor, settings=("keypoints", "sigma", "decode"),
         linked=("input_size", "sigma", "unbiased", "keypoints", "use_joint_weights"),
         demo=_pose_demo, demo_out="runs/demo"),
    Task("segmentation", "semantic segmentation (HRNetV2, HRNet-OCR): Cityscapes, folders, lists; mIoU",
         _segmentation_lightning, _segmentation_predictor, settings=("num_classes", "class_names"),
         demo=_segmentation_demo, demo_out="runs/demo_segmentation"),
    Task("detection", "object detection and instance segmentation (HRNetV2p): COCO instances; box and mask AP",
         _detection_lightning, _detection_predictor, settings=("num_classes", "class_names"), exports=(),
         demo=_detection_demo, demo_out="runs/demo_detection"),
    Task("face", "facial landmarks (HRNetV2): WFLW, 300W, COFW, AFLW; NME, failure rate, AUC",
         _face_lightning, _face_predictor, settings=("keypoints", "sigma", "decode", "input_size"),
         linked=("input_size", "sigma", "unbiased", "keypoints"), demo=_face_demo, demo_out="runs/demo_face"),
    Task("classification", "image classification (HRNet-C): ImageNet, ImageFolder, WebDataset; top-1 / top-5",
         _classification_lightning, _classification_predictor, settings=("num_classes", "class_names"),
         linked=("model",), demo=_classification_demo, demo_out="runs/demo_classification"),
    # After segmentation, which defines `hrnet predict --scales`; bottom-up reads the same flag.
    Task("bottomup", "bottom-up multi-person pose (HigherHRNet): COCO / CrowdPose keypoints, associative embedding; "
         "OKS AP", _bottomup_lightning, _bottomup_predictor,
         settings=("keypoints", "input_size", "detection_threshold", "tag_threshold", "max_num_people",
                   "project2image"),
         linked=("input_size", "keypoints", "max_num_people"), demo=_bottomup_demo, demo_out="runs/demo_bottomup"),
)}
"""Every task with a pipeline, by name; the first is the default where no preset names one."""

DEFAULT_TASK = next(iter(TASKS))


def task_of(model: str | None, command: str) -> Task:
    """The task of preset ``model`` (the default task when ``None``); a one-line ``ValueError`` naming the
    tasks that have a pipeline when the preset's task has none, or when ``model`` is no preset."""
    if model is None:
        return TASKS[DEFAULT_TASK]
    from ..models import get_preset

    preset = get_preset(model)
    if preset.task not in TASKS:
        raise ValueError(f"{model} is a {preset.task} model, and hrnet {command} has no {preset.task} pipeline yet; "
                         f"tasks with one: {', '.join(TASKS)} (their presets: hrnet models --task NAME)")
    return TASKS[preset.task]
