package dev.pyner;

import java.util.Arrays;
import java.util.List;
import java.util.stream.Collectors;

/**
 * The task an artifact serves, recorded in its manifest ({@code "task"}; absent: token
 * classification). The one place the JVM dispatches on the task (docs/tasks.md, mirroring {@code
 * pyner.tasks}): which {@link PynerModel} method gives its results, which graph outputs it has, and
 * the usage error a call for another task's output gets.
 */
public enum Task {
    /** Named entities ({@link PynerModel#predict(List)}), as transformers' token-classification pipeline. */
    TOKEN_CLASSIFICATION("token-classification", "predict", "entities", List.of("scores", "logits")),
    /** Ranked labels with scores ({@link PynerModel#classify(List)}), as the text-classification pipeline. */
    TEXT_CLASSIFICATION("text-classification", "classify", "labels", List.of("logits", "scores")),
    /** One sentence embedding per text ({@link PynerModel#embed(List)}), as sentence-transformers' encode. */
    FEATURE_EXTRACTION("feature-extraction", "embed", "embedding", List.of("last_hidden_state", "embeddings"));

    private final String wireName;
    private final String method;
    private final String result;
    private final List<String> outputs;

    Task(String wireName, String method, String result, List<String> outputs) {
        this.wireName = wireName;
        this.method = method;
        this.result = result;
        this.outputs = outputs;
    }

    /**
     * Returns the name the manifest, Python, the CLI and the sidecar use.
     *
     * @return e.g. "text-classification"
     */
    public String wireName() {
        return wireName;
    }

    /**
     * Returns the {@link PynerModel} method that gives this task's results.
     *
     * @return "predict", "classify" or "embed"
     */
    public String method() {
        return method;
    }

    /**
     * Returns what a text gives, in words.
     *
     * @return "entities", "labels" or "embedding"
     */
    public String result() {
        return result;
    }

    /**
     * Returns the graph outputs of this task's artifacts, in the export's order (output 0 is what plain
     * DJL's translator for the task reads).
     *
     * @return output names
     */
    public List<String> outputs() {
        return outputs;
    }

    /**
     * Parses a manifest's task name.
     *
     * @param name e.g. "feature-extraction"; null is token classification (a manifest without "task")
     * @return the task
     * @throws IllegalArgumentException naming the known tasks when {@code name} is not one
     */
    public static Task fromName(String name) {
        if (name == null) {
            return TOKEN_CLASSIFICATION;
        }
        for (Task t : values()) {
            if (t.wireName.equals(name)) {
                return t;
            }
        }
        String valid = Arrays.stream(values()).map(Task::wireName).collect(Collectors.joining(", "));
        throw new IllegalArgumentException("task '" + name + "' is not one this pyner-jvm runs (" + valid + ")");
    }

    /**
     * Refuses to give {@code wanted}'s output from an artifact of this task: the usage error every
     * runtime gives (Python's {@code pyner.tasks.require}), naming the artifact's task and the method
     * that serves it.
     *
     * @param wanted the task whose output was asked for
     * @param artifact the artifact (for the message)
     * @param called the method that was called
     * @throws PynerUsageException when {@code wanted} is not this task
     */
    public void require(Task wanted, Object artifact, String called) {
        if (wanted != this) {
            throw new PynerUsageException(this, wanted, artifact + ": the artifact is a " + wireName + " model: " + called
                    + "() gives " + wanted.result + " of a " + wanted.wireName + " model; use " + method + "() for its " + result);
        }
    }

    @Override
    public String toString() {
        return wireName;
    }
}
