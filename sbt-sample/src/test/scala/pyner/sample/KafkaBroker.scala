package pyner.sample

import java.nio.charset.StandardCharsets.UTF_8
import java.nio.file.{Files, Path, Paths}
import java.util.concurrent.TimeUnit

import scala.collection.mutable.ArrayBuffer
import scala.jdk.CollectionConverters._

import org.apache.kafka.clients.admin.{Admin, NewTopic, OffsetSpec}
import org.apache.kafka.clients.consumer.KafkaConsumer
import org.apache.kafka.clients.producer.{KafkaProducer, ProducerRecord, RecordMetadata}
import org.apache.kafka.common.TopicPartition
import org.apache.kafka.common.serialization.{ByteArraySerializer, StringDeserializer}

/** A real Kafka broker for the streaming tests and benchmark: one KRaft node (broker and controller in
  * one process, no ZooKeeper) in a JVM of its own, on two free 127.0.0.1 ports, its data in a temporary
  * folder. Its jars are the build's `kafkaBroker` class path (Maven Central, system property
  * `pyner.kafkaClasspath`): `kafka.tools.StorageTool format` writes the folder with a new cluster id,
  * then `kafka.Kafka server.properties` serves. `close()` stops it (SIGTERM, then SIGKILL) and removes
  * the folder; a JVM shutdown hook does the same if the caller dies first.
  */
final class KafkaBroker private (val dir: Path, val port: Int, process: java.lang.Process, hook: Thread) extends AutoCloseable {
  val bootstrap: String = s"127.0.0.1:$port"
  def log: Path = dir.resolve("broker.out")
  def output: String = if (Files.exists(log)) new String(Files.readAllBytes(log), UTF_8) else ""
  def alive: Boolean = process.isAlive

  def admin(): Admin = {
    val p = new java.util.Properties()
    p.put("bootstrap.servers", bootstrap)
    p.put("default.api.timeout.ms", "10000")
    p.put("request.timeout.ms", "5000")
    Admin.create(p)
  }

  /** Creates the topics and waits until every partition has a leader that serves it: metadata names a
    * leader a moment before that broker serves the partition, and a producer that writes in between
    * gets NOT_LEADER_OR_FOLLOWER (an idempotent producer of the 3.x clients was once seen stuck on it
    * until its delivery timeout).
    */
  def createTopics(partitions: Int, names: String*): Unit = {
    val a = admin()
    try {
      a.createTopics(names.map(n => new NewTopic(n, partitions, 1.toShort)).asJava).all().get(30, TimeUnit.SECONDS)
      val end = System.nanoTime() + TimeUnit.SECONDS.toNanos(30)
      def led: Boolean = // a topic just created may be unknown for a moment
        try a.describeTopics(names.asJava).allTopicNames().get(10, TimeUnit.SECONDS).asScala.values
          .forall(_.partitions().asScala.forall(p => p.leader() != null && !p.leader().isEmpty))
        catch { case _: java.util.concurrent.ExecutionException => false }
      val all = names.flatMap(n => (0 until partitions).map(i => new TopicPartition(n, i)))
      def served: Boolean = // the leader answers for each partition: its log exists there
        try { a.listOffsets(all.map(_ -> OffsetSpec.latest()).toMap.asJava).all().get(10, TimeUnit.SECONDS); true }
        catch { case _: java.util.concurrent.ExecutionException => false }
      while (!(led && served)) {
        if (System.nanoTime() > end) throw new IllegalStateException(s"topics ${names.mkString(", ")}: not served in 30 s")
        Thread.sleep(100)
      }
    } finally a.close()
  }

  /** A producer of raw bytes (acks=all, idempotent), so that tests can also send what is not UTF-8. */
  def producer(): KafkaProducer[Array[Byte], Array[Byte]] = {
    val p = new java.util.Properties()
    p.put("bootstrap.servers", bootstrap)
    p.put("acks", "all")
    p.put("linger.ms", "2")
    new KafkaProducer[Array[Byte], Array[Byte]](p, new ByteArraySerializer, new ByteArraySerializer)
  }

  /** Reads a topic from its beginning: every record so far, and each new one as `poll` sees it. */
  def reader(topic: String): KafkaBroker.TopicReader = new KafkaBroker.TopicReader(bootstrap, topic)

  override def close(): Unit = {
    try Runtime.getRuntime.removeShutdownHook(hook) catch { case _: IllegalStateException => () }
    KafkaBroker.stop(process, dir)
  }
}

object KafkaBroker {
  /** One output record as a consumer saw it; `seenMillis` = wall-clock time when `poll` returned it. */
  final case class Rec(key: String, value: String, partition: Int, offset: Long, timestamp: Long, seenMillis: Long)

  final class TopicReader(bootstrap: String, topic: String) extends AutoCloseable {
    private val consumer = {
      val p = new java.util.Properties()
      p.put("bootstrap.servers", bootstrap)
      p.put("enable.auto.commit", "false")
      p.put("max.poll.records", "5000")
      new KafkaConsumer[String, String](p, new StringDeserializer, new StringDeserializer)
    }
    private val partitions = consumer.partitionsFor(topic, java.time.Duration.ofSeconds(30)).asScala
      .map(i => new TopicPartition(topic, i.partition)).asJava
    consumer.assign(partitions)
    consumer.seekToBeginning(partitions)
    val all: ArrayBuffer[Rec] = ArrayBuffer.empty

    /** The records that arrived since the last call (waiting up to `millis` for the first). */
    def poll(millis: Long = 200): Seq[Rec] = {
      val got = consumer.poll(java.time.Duration.ofMillis(millis)).asScala.toSeq
      val now = System.currentTimeMillis()
      val recs = got.map(r => Rec(r.key, r.value, r.partition, r.offset, r.timestamp, now))
      all ++= recs
      recs
    }

    /** Polls until `done(all records so far)` or `seconds` pass (then fails with `what` and how many came). */
    def until(seconds: Int, what: => String)(done: Seq[Rec] => Boolean): Seq[Rec] = {
      val end = System.nanoTime() + TimeUnit.SECONDS.toNanos(seconds.toLong)
      while (!done(all.toSeq)) {
        if (System.nanoTime() > end) org.scalatest.Assertions.fail(s"$topic: $what not seen within $seconds s (${all.size} records read)")
        poll()
      }
      all.toSeq
    }

    /** How many records the topic holds now (end offsets summed). */
    def size: Long = consumer.endOffsets(partitions).asScala.values.map(_.longValue).sum

    override def close(): Unit = consumer.close()
  }

  /** Sends each (key, value) and waits for all acks; the record metadata, in order. */
  def send(producer: KafkaProducer[Array[Byte], Array[Byte]], topic: String, records: Seq[(String, Array[Byte])]): Seq[RecordMetadata] = {
    val futures = records.map { case (k, v) => producer.send(new ProducerRecord(topic, Option(k).map(_.getBytes(UTF_8)).orNull, v)) }
    producer.flush()
    futures.map(_.get(30, TimeUnit.SECONDS))
  }

  private def javaBin: String = Paths.get(sys.props("java.home"), "bin", "java").toString

  private def classpath: String = sys.props.get("pyner.kafkaClasspath").filter(_.nonEmpty)
    .getOrElse(throw new IllegalStateException("system property pyner.kafkaClasspath is not set (run through sbt-sample/sbtw: build.sbt's kafkaBroker project resolves it)"))

  /** Formats a new folder and starts the broker; returns once it answers an admin request (or fails with its log). */
  def start(timeoutSeconds: Int = 120): KafkaBroker = {
    val dir = Files.createTempDirectory("pyner-kafka")
    val (port, controllerPort) = (TestSupport.freePort(), TestSupport.freePort())
    val config = dir.resolve("server.properties")
    Files.write(config, Seq(
      "process.roles=broker,controller",
      "node.id=1",
      s"controller.quorum.voters=1@127.0.0.1:$controllerPort",
      s"listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controllerPort",
      s"advertised.listeners=PLAINTEXT://127.0.0.1:$port",
      "controller.listener.names=CONTROLLER",
      "inter.broker.listener.name=PLAINTEXT",
      "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
      s"log.dirs=${dir.resolve("data")}",
      "num.partitions=2",
      "auto.create.topics.enable=false", // the topics a test uses are made by it, as in production
      "offsets.topic.replication.factor=1",
      "offsets.topic.num.partitions=1",
      "transaction.state.log.replication.factor=1",
      "transaction.state.log.min.isr=1",
      "share.coordinator.state.topic.replication.factor=1",
      "share.coordinator.state.topic.min.isr=1",
      "group.initial.rebalance.delay.ms=0",
      "num.network.threads=2",
      "num.io.threads=2",
      "num.recovery.threads.per.data.dir=1",
    ).asJava, UTF_8)
    Files.write(dir.resolve("log4j2.properties"), Seq(
      "rootLogger.level = warn",
      "rootLogger.appenderRef.out.ref = out",
      "appender.out.type = Console",
      "appender.out.name = out",
      "appender.out.layout.type = PatternLayout",
      "appender.out.layout.pattern = [%d] %p %c{1}: %m%n",
    ).asJava, UTF_8)
    val log = dir.resolve("broker.out")
    val jvm = Seq(javaBin, "-Xmx512m", "-XX:+UseSerialGC", s"-Dlog4j2.configurationFile=${dir.resolve("log4j2.properties")}",
                  s"-Dkafka.logs.dir=$dir", "-cp", classpath)
    val clusterId = org.apache.kafka.common.Uuid.randomUuid().toString
    val format = new java.lang.ProcessBuilder((jvm ++ Seq("kafka.tools.StorageTool", "format", "--cluster-id", clusterId,
      "--config", config.toString)).asJava).redirectErrorStream(true).redirectOutput(log.toFile).start()
    if (!format.waitFor(120, TimeUnit.SECONDS) || format.exitValue() != 0) {
      format.destroyForcibly()
      val out = new String(Files.readAllBytes(log), UTF_8)
      TestSupport.deleteRecursively(dir)
      throw new IllegalStateException(s"kafka.tools.StorageTool format failed:\n$out")
    }
    val process = new java.lang.ProcessBuilder((jvm ++ Seq("kafka.Kafka", config.toString)).asJava)
      .redirectErrorStream(true).redirectOutput(java.lang.ProcessBuilder.Redirect.appendTo(log.toFile)).start()
    val hook = new Thread(() => stop(process, dir), "pyner-kafka-broker-stop")
    Runtime.getRuntime.addShutdownHook(hook)
    val broker = new KafkaBroker(dir, port, process, hook)
    val end = System.nanoTime() + TimeUnit.SECONDS.toNanos(timeoutSeconds.toLong)
    var up = false
    while (!up) {
      if (!process.isAlive) { val out = broker.output; broker.close(); throw new IllegalStateException(s"the Kafka broker exited with ${process.exitValue()}:\n$out") }
      if (System.nanoTime() > end) { val out = broker.output; broker.close(); throw new IllegalStateException(s"the Kafka broker did not answer in $timeoutSeconds s:\n$out") }
      // a plain connect first: an admin client would log a warning for every refused connection
      val listening = try { new java.net.Socket("127.0.0.1", port).close(); true } catch { case _: java.io.IOException => false }
      up = listening && {
        val a = broker.admin()
        try a.describeCluster().nodes().get(5, TimeUnit.SECONDS).size() == 1 catch { case _: Exception => false } finally a.close()
      }
      if (!up) Thread.sleep(300)
    }
    broker
  }

  private def stop(process: java.lang.Process, dir: Path): Unit = {
    if (process.isAlive) {
      process.destroy() // SIGTERM: a controlled shutdown
      if (!process.waitFor(20, TimeUnit.SECONDS)) { process.destroyForcibly(); process.waitFor(10, TimeUnit.SECONDS) }
    }
    try TestSupport.deleteRecursively(dir) catch { case _: java.io.IOException => () }
  }
}
