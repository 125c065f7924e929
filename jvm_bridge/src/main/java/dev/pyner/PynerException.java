package dev.pyner;

import java.nio.file.Path;

/**
 * A model could not be loaded: a missing, tampered or too-new artifact file, an unreadable
 * tokenizer or model, or golden fixtures this runtime does not reproduce. The message names the
 * file and the reason; {@link #file()} returns the file.
 */
public class PynerException extends Exception {

    private static final long serialVersionUID = 1L;

    private final transient Path file;

    /**
     * Creates an exception about {@code file}.
     *
     * @param file the artifact file at fault (may be the artifact folder itself)
     * @param reason what is wrong with it
     */
    public PynerException(Path file, String reason) {
        super(file + ": " + reason);
        this.file = file;
    }

    /**
     * Creates an exception about {@code file} with its cause.
     *
     * @param file the artifact file at fault
     * @param reason what is wrong with it
     * @param cause the underlying failure
     */
    public PynerException(Path file, String reason, Throwable cause) {
        super(file + ": " + reason, cause);
        this.file = file;
    }

    /**
     * Returns the artifact file this exception is about.
     *
     * @return the file (or folder) named in the message
     */
    public Path file() {
        return file;
    }
}
