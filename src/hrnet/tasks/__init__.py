"""Task pipelines, one folder per task (``pose/``, ``segmentation/``), each with its LightningModule, DataModule,
datasets, metrics and Predictor; ``registry.TASKS`` names them, ``base`` holds what they share."""
