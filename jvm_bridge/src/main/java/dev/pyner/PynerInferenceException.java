package dev.pyner;

/** Inference failed inside the tokenizer or ONNX Runtime (unchecked: an engine failure). */
public class PynerInferenceException extends RuntimeException {

    private static final long serialVersionUID = 1L;

    /**
     * Creates an inference exception.
     *
     * @param message what failed
     * @param cause the engine's exception
     */
    public PynerInferenceException(String message, Throwable cause) {
        super(message, cause);
    }

    /**
     * Creates an inference exception.
     *
     * @param message what failed
     */
    public PynerInferenceException(String message) {
        super(message);
    }
}
