package pyner.sample

import java.util.concurrent.TimeUnit

import scala.annotation.tailrec
import scala.concurrent.duration._
import scala.jdk.CollectionConverters._

import io.grpc.{ManagedChannel, ManagedChannelBuilder, Status, StatusRuntimeException}

import dev.pyner.grpc.v1.{GetModelInfoRequest, ModelInfo, NerServiceGrpc, RecognizeRequest}

/** The sidecar: `pyner serve ARTIFACT` answers pyner.v1.NerService over gRPC; this client uses
  * stubs generated from `proto/pyner/v1/pyner.proto` at build time.
  *
  * Every call gets its own deadline. UNAVAILABLE (server starting, draining, or not reachable) and
  * RESOURCE_EXHAUSTED (queue full) are retried with exponential backoff; other codes fail at once
  * (INVALID_ARGUMENT will not get better by retrying).
  *
  * {{{
  * .venv/bin/pyner serve artifacts/demo --port 50051 &
  * sbt-sample/sbtw "runMain pyner.sample.SidecarClient 127.0.0.1:50051 'Angela Merkel visited Paris.'"
  * }}}
  */
final class NerClient(val target: String, val deadline: FiniteDuration = 10.seconds, val maxAttempts: Int = 5,
                      val initialBackoff: FiniteDuration = 100.millis, val maxBackoff: FiniteDuration = 2.seconds)
    extends AutoCloseable {
  require(maxAttempts >= 1, "maxAttempts must be at least 1")

  private val channel: ManagedChannel = ManagedChannelBuilder.forTarget(target).usePlaintext().build()
  private val stub = NerServiceGrpc.newBlockingStub(channel)
  private val retried = new java.util.concurrent.atomic.AtomicLong()

  /** Calls retried so far (UNAVAILABLE or RESOURCE_EXHAUSTED answers that were tried again). */
  def retries: Long = retried.get()

  /** Entities of `texts` (one list per text, in order) with the pipeline's aggregation names. */
  def recognize(texts: Seq[String], aggregation: String = "simple"): Seq[Seq[Ent]] = {
    // START sidecar
    val request = RecognizeRequest.newBuilder().addAllTexts(texts.asJava).setAggregation(aggregation).build()
    val response = call("Recognize")(stub.withDeadlineAfter(deadline.toMillis, TimeUnit.MILLISECONDS).recognize(request))
    response.getResultsList.asScala.toSeq.map(_.getEntitiesList.asScala.toSeq.map(Ent.of))
    // END sidecar
  }

  def modelInfo(): ModelInfo =
    call("GetModelInfo")(stub.withDeadlineAfter(deadline.toMillis, TimeUnit.MILLISECONDS)
      .getModelInfo(GetModelInfoRequest.getDefaultInstance))

  private def retryable(code: Status.Code): Boolean =
    code == Status.Code.UNAVAILABLE || code == Status.Code.RESOURCE_EXHAUSTED

  private def call[T](method: String)(rpc: => T): T = {
    @tailrec def attempt(n: Int, backoff: FiniteDuration): T = {
      val outcome = try Right(rpc) catch { case e: StatusRuntimeException => Left(e) }
      outcome match {
        case Right(value) => value
        case Left(e) if retryable(e.getStatus.getCode) && n < maxAttempts =>
          retried.incrementAndGet()
          Thread.sleep(backoff.toMillis)
          attempt(n + 1, (backoff * 2).min(maxBackoff))
        case Left(e) => throw NerClient.explain(target, method, e, n)
      }
    }
    attempt(1, initialBackoff)
  }

  override def close(): Unit = {
    channel.shutdown()
    if (!channel.awaitTermination(5, TimeUnit.SECONDS)) channel.shutdownNow()
  }
}

object NerClient {
  /** One line for a failed call: which sidecar, which method, the status, after how many attempts. */
  def explain(target: String, method: String, e: StatusRuntimeException, attempts: Int): SampleError = {
    val s = e.getStatus
    val why = Option(s.getDescription).orElse(Option(s.getCause).map(_.getMessage)).getOrElse("no details")
    val code = s.getCode match {
      case Status.Code.INVALID_ARGUMENT    => 3
      case Status.Code.FAILED_PRECONDITION => 4
      case Status.Code.RESOURCE_EXHAUSTED  => 7
      case _                               => 1
    }
    val tries = if (attempts > 1) s" after $attempts attempts" else ""
    val hint = if (s.getCode == Status.Code.UNAVAILABLE) s" (is `pyner serve` running at $target?)" else ""
    new SampleError(s"sidecar $target: $method failed$tries: ${s.getCode} ($why)$hint", code, e)
  }
}

object SidecarClient {
  def main(args: Array[String]): Unit = sys.exit(Cli.execute("SidecarClient") {
    if (args.isEmpty) throw SampleError.usage("usage: SidecarClient HOST:PORT [TEXT ...]")
    val texts = if (args.length > 1) args.toSeq.tail else InProcess.NewsSentences
    val client = new NerClient(args(0))
    try {
      val info = client.modelInfo()
      println(s"model ${info.getName} (${info.getPrecision}, ${info.getArtifactDigest.take(19)}...) at ${args(0)}")
      for ((text, ents) <- texts.zip(client.recognize(texts))) {
        println(text)
        if (ents.isEmpty) println("  (no entities)") else ents.foreach(e => println("  " + Ent.show(e)))
      }
    } finally client.close()
  })
}
