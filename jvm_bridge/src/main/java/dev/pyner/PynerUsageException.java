package dev.pyner;

/**
 * A call the artifact cannot serve: another task's output asked for (entities of a text-classification
 * artifact, labels of an embedding one, ...). Unchecked, like the other misuses of a model ({@link
 * IllegalStateException}); Python's {@code UsageError} (exit 2, gRPC INVALID_ARGUMENT) is its
 * counterpart. The message names the artifact, its task and the method to use instead.
 */
public class PynerUsageException extends IllegalStateException {

    private static final long serialVersionUID = 1L;

    private final Task task;
    private final Task wanted;

    /**
     * Creates the exception.
     *
     * @param task the artifact's task
     * @param wanted the task whose output was asked for
     * @param message the message
     */
    public PynerUsageException(Task task, Task wanted, String message) {
        super(message);
        this.task = task;
        this.wanted = wanted;
    }

    /** @return the artifact's task */
    public Task task() {
        return task;
    }

    /** @return the task whose output was asked for */
    public Task wanted() {
        return wanted;
    }
}
