"""Everything of the codec that needs torch: the trainable network, training, export
(safetensors, integer tables and the ONNX transforms the runtime runs), checkpoint
migrations (widen, widen_synthesis), the torch transforms and the refining encoder
(``--effort`` 2 and up).

The runtime (:mod:`sdc.models`) imports none of it unless asked for torch.
Install torch, torchvision and compressai to use it (sdc's ``[train]`` extra).
"""
