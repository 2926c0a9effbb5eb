"""Backbones and blocks shared by the models: ``resnext`` (ResNet-50 / ResNeXt-101 encoders), ``fusion_decoder``
(LeReS / SGR decoder), ``dinov2`` (DINOv2 ViT encoder), ``vit_blocks`` (attention and MLP of the ViT encoders)."""
