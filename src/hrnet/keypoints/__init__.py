"""The keypoint family shared by top-down pose, facial landmarks and bottom-up pose: keypoint sets
(:mod:`.sets`), top-down affine geometry (:mod:`.geometry`), the heatmap codec and its loss (:mod:`.codec`),
the top-down dataset base and decoding (:mod:`.topdown`), OKS / COCO keypoint evaluation
(:mod:`.evaluation`) and skeleton drawing (:mod:`.drawing`)."""
