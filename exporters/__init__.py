"""ONNX and TensorRT exporters and runtimes for sliced sfsc-deploy models."""
