"""Text to vectors: the encoder protocol, the torch and ONNX Runtime encoders; and, at set-up time only, the model's
conversion, its ONNX export and fine-tuning."""
