package pyner.sample

import java.nio.ByteBuffer
import java.nio.charset.{CharacterCodingException, CodingErrorAction, StandardCharsets}
import java.util.concurrent.{ExecutionException, TimeUnit, TimeoutException}

import scala.jdk.CollectionConverters._

import com.fasterxml.jackson.databind.ObjectMapper
import org.apache.spark.sql.SparkSession
import org.apache.spark.sql.functions.{coalesce, to_json}
import org.apache.spark.sql.streaming.{StreamingQuery, StreamingQueryListener, Trigger}
import org.apache.spark.util.{CollectionAccumulator, LongAccumulator}

/** Streaming NER with Spark Structured Streaming: articles from a Kafka topic, entities to another.
  *
  * Input: each record's value is one JSON object with "text" and "id" (the rules of one JSON Lines line
  * of `pyner predict -i`; without "id", the record's key, else its coordinates TOPIC/PARTITION/OFFSET).
  * Output: one record per article, key = the article id, value = `{"id", "entities": [{"label",
  * "score", "word", "start", "end"}, ...]}`, the row SparkNer writes. A record that is not such an
  * object (not UTF-8, not JSON, not an object, "text" missing or not a string, no value at all) goes
  * to the dead-letter topic, keyed by its coordinates, with its error and the record itself, and the
  * stream goes on.
  *
  * Delivery: at-least-once. Offsets live in the checkpoint; a batch whose commit was not written
  * (the query was stopped or killed, a task failed) is run again on restart, so its records can come
  * out twice, with the same key. Nothing is lost: consumers dedupe by key (or compact the topic).
  *
  * The model: one per executor JVM, loaded by the first task that needs it ([[NerTask]],
  * [[ExecutorModel]]), as in SparkNer; it outlives batches and query restarts within that JVM.
  *
  * {{{
  * sbt-sample/sbtw "runMain pyner.sample.StreamingNer --bootstrap-servers 127.0.0.1:9092 --input-topic articles
  *   --output-topic entities --dead-letter-topic articles-dlq --checkpoint /var/lib/pyner/ckpt --artifact ../artifacts/demo"
  * }}}
  */
object StreamingNer {

  final case class Options(model: ModelOptions = ModelOptions(), bootstrapServers: String = "", inputTopic: String = "",
                           outputTopic: String = "", deadLetterTopic: String = "", checkpoint: String = "",
                           triggerMillis: Long = 1000L, maxOffsetsPerTrigger: Int = 1000, startingOffsets: String = "earliest",
                           minPartitions: Option[Int] = None, kafka: Map[String, String] = Map.empty)

  /** A Kafka record as Spark's Kafka source gives it. */
  final case class KafkaRecord(key: Array[Byte], value: Array[Byte], topic: String, partition: Int, offset: Long,
                               timestamp: java.sql.Timestamp)
  /** An input record that is an article. */
  final case class Article(id: String, text: String)
  /** An input record that is not: its key in the dead-letter topic and the value written there. */
  final case class DeadLetter(key: String, value: String)
  /** One output record: to `topic`, with `key`; the value is `result` as JSON, or the dead letter's. */
  final case class Routed(topic: String, key: String, result: Option[SparkNer.Result], deadLetter: Option[String])

  /** A started query, with what its tasks report: model loads, dead letters. */
  final case class Running(query: StreamingQuery, loads: CollectionAccumulator[ModelLoad], deadLetters: LongAccumulator)

  val Usage: String =
    """usage: StreamingNer --bootstrap-servers HOST:PORT --input-topic T --output-topic T --dead-letter-topic T
      |                    --checkpoint DIR --artifact DIR [--trigger-interval 1s] [--max-offsets-per-trigger 1000]
      |                    [--starting-offsets earliest|latest] [--min-partitions N] [--kafka KEY=VALUE ...]
      |""".stripMargin + ModelOptions.Usage.linesIterator.map("                    " + _).mkString("\n")

  def parseArgs(args: Array[String]): Options = {
    val o = ModelOptions.parseAll(args, Options(), Usage)(_.model, (o, m) => o.copy(model = m)) { (o, flag, value) =>
      flag match {
        case "--bootstrap-servers"       => o.copy(bootstrapServers = value)
        case "--input-topic"             => o.copy(inputTopic = value)
        case "--output-topic"            => o.copy(outputTopic = value)
        case "--dead-letter-topic"       => o.copy(deadLetterTopic = value)
        case "--checkpoint"              => o.copy(checkpoint = value)
        case "--trigger-interval"        => o.copy(triggerMillis = interval(flag, value))
        case "--max-offsets-per-trigger" => o.copy(maxOffsetsPerTrigger = Cli.positiveInt(flag, value))
        case "--starting-offsets"        => o.copy(startingOffsets = value)
        case "--min-partitions"          => o.copy(minPartitions = Some(Cli.positiveInt(flag, value)))
        case "--kafka" => value.split("=", 2) match {
          case Array(k, v) if k.nonEmpty => o.copy(kafka = o.kafka + (k.stripPrefix("kafka.") -> v))
          case _                         => throw SampleError.usage(s"--kafka needs KEY=VALUE (a Kafka client property), got '$value'")
        }
        case other => throw SampleError.usage(s"unknown option $other\n$Usage")
      }
    }
    for ((name, v) <- Seq("--bootstrap-servers" -> o.bootstrapServers, "--input-topic" -> o.inputTopic,
                          "--output-topic" -> o.outputTopic, "--dead-letter-topic" -> o.deadLetterTopic,
                          "--checkpoint" -> o.checkpoint) if v.isEmpty)
      throw SampleError.usage(s"$name is required\n$Usage")
    if (Set(o.outputTopic, o.deadLetterTopic)(o.inputTopic) || o.outputTopic == o.deadLetterTopic)
      throw SampleError.usage(s"--input-topic, --output-topic and --dead-letter-topic must be three different topics " +
        s"(got ${o.inputTopic}, ${o.outputTopic}, ${o.deadLetterTopic})")
    if (!Set("earliest", "latest")(o.startingOffsets))
      throw SampleError.usage(s"--starting-offsets must be earliest or latest, got '${o.startingOffsets}'")
    for (k <- o.kafka.keys if ReservedKafka(k))
      throw SampleError.usage(s"--kafka $k: set by StreamingNer itself (Spark's Kafka source and sink refuse it)")
    ModelOptions.validate(o.model, Usage)
    o
  }

  // Kafka client properties that Spark's Kafka source or sink manages and refuses as options.
  private val ReservedKafka = Set("bootstrap.servers", "auto.offset.reset", "key.deserializer",
    "value.deserializer", "key.serializer", "value.serializer", "enable.auto.commit", "interceptor.classes")

  /** `0` (each batch as soon as the last one ends and records are there), `500ms`, `2s`, `1min`: milliseconds. */
  def interval(flag: String, value: String): Long = {
    val Interval = """(\d{1,9})\s*(ms|s|min)?""".r
    value.trim match {
      case Interval(n, null) if n.toLong == 0 => 0L
      case Interval(n, "ms")                  => n.toLong
      case Interval(n, "s")                   => n.toLong * 1000L
      case Interval(n, "min")                 => n.toLong * 60000L
      case _ => throw SampleError.usage(s"$flag needs a duration such as 0, 500ms, 2s or 1min, got '$value'")
    }
  }

  def main(args: Array[String]): Unit = sys.exit(Cli.execute("StreamingNer") {
    val o = parseArgs(args)
    val spark = SparkApp.session("pyner-streaming-ner", o.model.master)
    try {
      val running = start(spark, o)
      spark.streams.addListener(progressPrinter(running))
      println(s"StreamingNer: ${o.inputTopic} -> ${o.outputTopic} (dead letters: ${o.deadLetterTopic}) at " +
        s"${o.bootstrapServers}, checkpoint ${o.checkpoint}")
      // SIGTERM or Ctrl-C: stop the query; a batch it interrupts is run again on the next start (at-least-once).
      sys.addShutdownHook(if (running.query.isActive) running.query.stop())
      running.query.awaitTermination() // throws, with the cause, when the query fails
    } finally spark.stop()
  })

  /** Prints one line per batch that read records, and every model load as the executors report it. */
  def progressPrinter(running: Running): StreamingQueryListener = new StreamingQueryListener {
    private var loadsShown = 0
    override def onQueryStarted(e: StreamingQueryListener.QueryStartedEvent): Unit = ()
    override def onQueryTerminated(e: StreamingQueryListener.QueryTerminatedEvent): Unit = ()
    override def onQueryProgress(e: StreamingQueryListener.QueryProgressEvent): Unit = synchronized {
      val p = e.progress
      if (p.numInputRows > 0) {
        val ms = Option(p.durationMs.get("triggerExecution")).map(_.longValue).getOrElse(0L)
        println(f"StreamingNer: batch ${p.batchId}: ${p.numInputRows} records in ${ms / 1000.0}%.1f s " +
          f"(${p.processedRowsPerSecond}%.1f records/s), ${running.deadLetters.value} dead letter(s) so far")
      }
      val loads = running.loads.value.asScala.toSeq
      if (loads.size > loadsShown) { loadsShown = loads.size; println("StreamingNer: " + SparkApp.loadsLine(loads)) }
    }
  }

  /** Starts the query (after checking the artifact and the topics); it runs until stopped or failed. */
  def start(spark: SparkSession, o: Options): Running = {
    import spark.implicits._
    val sc = spark.sparkContext
    val model = o.model.checked()
    checkTopics(o)
    val task = model.task(sc)
    val loadsSeen = sc.collectionAccumulator[ModelLoad]("pyner model loads")
    val deadLetters = sc.longAccumulator("pyner dead letters")
    val kafka = o.kafka.map { case (k, v) => s"kafka.$k" -> v } + ("kafka.bootstrap.servers" -> o.bootstrapServers)
    val source = spark.readStream.format("kafka").options(kafka)
      .option("subscribe", o.inputTopic)
      .option("startingOffsets", o.startingOffsets) // the first start only; later ones resume from the checkpoint
      .option("failOnDataLoss", "true")             // records deleted (retention) before they were read stop the query
      .option("maxOffsetsPerTrigger", o.maxOffsetsPerTrigger.toLong)
    o.minPartitions.foreach(n => source.option("minPartitions", n.toLong))
    val records = source.load().select("key", "value", "topic", "partition", "offset", "timestamp").as[KafkaRecord]
    val (out, dlq) = (o.outputTopic, o.deadLetterTopic)
    // START streaming
    val routed = records.mapPartitions { recs =>
      val model = task.model(loadsSeen.add) // this executor JVM's one model, as in SparkNer
      recs.map(route).grouped(task.batchSize).flatMap { group =>
        val found = task.predict(model, group.collect { case Right(article) => article })(_.text).iterator
        group.map {
          case Right(_)   => val (a, ents) = found.next(); Routed(out, a.id, Some(SparkNer.Result(a.id, ents)), None)
          case Left(dead) => deadLetters.add(1); Routed(dlq, dead.key, None, Some(dead.value))
        }
      }
    }
    val query = routed.select($"topic", $"key", coalesce(to_json($"result"), $"deadLetter").as("value"))
      .writeStream.format("kafka").options(kafka) // at-least-once: keyed by article id
      .option("checkpointLocation", o.checkpoint)
      .trigger(Trigger.ProcessingTime(o.triggerMillis, TimeUnit.MILLISECONDS))
      .queryName("pyner-streaming-ner")
      .start()
    // END streaming
    Running(query, loadsSeen, deadLetters)
  }

  private lazy val mapper = new ObjectMapper()

  /** An input record: an article, or a dead letter with what is wrong with it. */
  def route(r: KafkaRecord): Either[DeadLetter, Article] = {
    val where = s"${r.topic}/${r.partition}/${r.offset}"
    def dead(error: String, rawValue: Boolean = false): Left[DeadLetter, Article] = {
      val v = mapper.createObjectNode().put("error", error).put("topic", r.topic).put("partition", r.partition)
        .put("offset", r.offset)
      if (r.timestamp != null) v.put("timestamp", r.timestamp.getTime)
      if (r.key == null) v.putNull("key") else v.put("key", new String(r.key, StandardCharsets.UTF_8))
      if (r.value == null) v.putNull("value")
      else if (rawValue) v.put("value_base64", java.util.Base64.getEncoder.encodeToString(r.value))
      else v.put("value", new String(r.value, StandardCharsets.UTF_8))
      Left(DeadLetter(where, mapper.writeValueAsString(v)))
    }
    if (r.value == null) dead("the record has no value (null)")
    else utf8(r.value) match {
      case None => dead("the value is not UTF-8 text (kept as value_base64)", rawValue = true)
      case Some(body) => InputLines.document(body) match {
        case Right((id, text)) => Right(Article(id.orElse(Option(r.key).map(new String(_, StandardCharsets.UTF_8))).getOrElse(where), text))
        case Left(error)       => dead(error)
      }
    }
  }

  private def utf8(bytes: Array[Byte]): Option[String] =
    try Some(StandardCharsets.UTF_8.newDecoder().onMalformedInput(CodingErrorAction.REPORT)
      .onUnmappableCharacter(CodingErrorAction.REPORT).decode(ByteBuffer.wrap(bytes)).toString)
    catch { case _: CharacterCodingException => None }

  /** The three topics exist (exit 3 naming the missing ones), and the brokers answer (else exit 1). Spark's
    * source would wait for ever on a missing input topic, and its sink fail the batch after a minute.
    */
  def checkTopics(o: Options): Unit = {
    val props = new java.util.Properties()
    o.kafka.foreach { case (k, v) => props.put(k, v) }
    props.put("bootstrap.servers", o.bootstrapServers)
    props.putIfAbsent("default.api.timeout.ms", "30000")
    props.putIfAbsent("request.timeout.ms", "10000")
    val admin = org.apache.kafka.clients.admin.Admin.create(props)
    try {
      val names = admin.listTopics().names().get(30, TimeUnit.SECONDS).asScala
      val missing = Seq(o.inputTopic, o.outputTopic, o.deadLetterTopic).filterNot(names)
      if (missing.nonEmpty)
        throw SampleError.input(s"topic(s) ${missing.mkString(", ")} not found at ${o.bootstrapServers}; create them first " +
          "(kafka-topics.sh --create --topic NAME --bootstrap-server HOST:PORT)")
    } catch {
      case _: TimeoutException =>
        throw new SampleError(s"Kafka at ${o.bootstrapServers} did not answer in 30 s (is a broker listening there?)", 1)
      case e: ExecutionException =>
        throw new SampleError(s"Kafka at ${o.bootstrapServers}: ${Option(e.getCause).getOrElse(e).getMessage}", 1, e)
    } finally admin.close(java.time.Duration.ofSeconds(5))
  }
}
