"""Tasks: one LightningModule (+ DataModule) per task: loss, decoding, metrics."""
