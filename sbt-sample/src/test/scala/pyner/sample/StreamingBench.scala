package pyner.sample

import java.nio.charset.StandardCharsets.UTF_8
import java.nio.file.{Files, Paths}
import java.util.concurrent.ConcurrentHashMap

import scala.jdk.CollectionConverters._

import org.apache.kafka.clients.producer.ProducerRecord

import StreamingNerSpec.{json, Driver}

/** A measurement of StreamingNer, not a test: a real broker (KafkaBroker), StreamingNer as a user runs it
  * (its own JVM, `--master local[2]`), WikiGold sentences as articles.
  *
  *  1. warm-up: a few records, until they come out (model load, JIT);
  *  2. capacity: a backlog of `--backlog` records at once, drained as fast as the query goes;
  *  3. steady state: `--rate` records/s (default: half the capacity) for `--seconds`: throughput, and the
  *     end-to-end latency of each record, from just before the producer's send to the moment a consumer
  *     of the output topic has it (one clock: everything runs on this machine);
  *  4. recovery: still producing at that rate, the driver is killed (SIGKILL) and started again at once
  *     from its checkpoint: time to the first output record, and until every record produced before the
  *     restart is out; then the latency once caught up.
  *
  * {{{
  * sbt-sample/sbtw "Test/runMain pyner.sample.StreamingBench --artifact ../artifacts/demo [--rate 20] [--seconds 60]
  *   [--backlog 1000] [-- more StreamingNer flags]"
  * }}}
  */
object StreamingBench {
  final case class Options(artifact: String = "", rate: Option[Double] = None, seconds: Int = 60, backlog: Int = 1000,
                           after: Int = 30, extra: Seq[String] = Nil)

  def parse(args: List[String], o: Options = Options()): Options = args match {
    case Nil                              => o
    case "--" :: rest                     => o.copy(extra = rest)
    case "--artifact" :: v :: rest        => parse(rest, o.copy(artifact = v))
    case "--rate" :: v :: rest            => parse(rest, o.copy(rate = Some(v.toDouble)))
    case "--seconds" :: v :: rest         => parse(rest, o.copy(seconds = v.toInt))
    case "--backlog" :: v :: rest         => parse(rest, o.copy(backlog = v.toInt))
    case "--after-restart" :: v :: rest   => parse(rest, o.copy(after = v.toInt))
    case other :: _ => sys.error(s"StreamingBench: unknown argument $other (--artifact DIR [--rate R] [--seconds S] [--backlog N] [--after-restart S] [-- StreamingNer flags])")
  }

  private def pct(xs: Seq[Long], p: Double): Long = {
    val s = xs.sorted
    if (s.isEmpty) -1L else s(math.min(s.size - 1, math.ceil(p / 100.0 * s.size).toInt - 1).max(0))
  }

  def main(args: Array[String]): Unit = {
    val o = parse(args.toList)
    require(o.artifact.nonEmpty, "--artifact DIR is required")
    val artifact = Paths.get(o.artifact).toAbsolutePath.normalize
    val sentences = TestSupport.wikigoldSentences(1696)
    val work = Files.createTempDirectory("pyner-streaming-bench")
    val broker = KafkaBroker.start()
    try {
      val (in, out, dlq) = ("bench-articles", "bench-entities", "bench-dead-letters")
      broker.createTopics(2, in, out, dlq)
      val cli = Seq("--bootstrap-servers", broker.bootstrap, "--input-topic", in, "--output-topic", out,
                    "--dead-letter-topic", dlq, "--checkpoint", work.resolve("ckpt").toString, "--artifact", artifact.toString,
                    "--master", "local[2]") ++ o.extra
      println(s"StreamingBench: ${artifact.getFileName}, broker ${broker.bootstrap}, StreamingNer ${cli.drop(12).mkString(" ")}")
      val producer = broker.producer()
      val sent = new ConcurrentHashMap[String, java.lang.Long]()
      var next = 0
      def article(): (String, Array[Byte]) = {
        val id = f"a-$next%07d"
        val value = json(Map("id" -> id, "text" -> sentences(next % sentences.size))).getBytes(UTF_8)
        next += 1
        id -> value
      }
      def send(rec: (String, Array[Byte])): Unit = {
        sent.put(rec._1, System.currentTimeMillis())
        producer.send(new ProducerRecord(in, rec._1.getBytes(UTF_8), rec._2))
      }
      /** Sends at `rate` records/s for `seconds` (on a thread); returns the ids, in order. */
      def paced(rate: Double, seconds: Double): (Thread, java.util.List[String]) = {
        val ids = java.util.Collections.synchronizedList(new java.util.ArrayList[String]())
        val n = (rate * seconds).round.toInt
        val t = new Thread(() => {
          val start = System.nanoTime()
          for (i <- 0 until n) {
            val due = start + (i * 1e9 / rate).toLong
            val wait = due - System.nanoTime()
            if (wait > 0) Thread.sleep(wait / 1000000, (wait % 1000000).toInt)
            val rec = synchronized(article())
            ids.add(rec._1)
            send(rec)
          }
          producer.flush()
        }, "bench-producer")
        t.start()
        (t, ids)
      }
      val reader = broker.reader(out)
      val seen = new java.util.HashMap[String, java.lang.Long]()
      def pollInto(): Unit = reader.poll().foreach(r => seen.putIfAbsent(r.key, r.seenMillis))
      def waitFor(what: String, seconds: Int)(done: => Boolean): Unit = {
        val end = System.nanoTime() + seconds * 1000000000L
        while (!done) { if (System.nanoTime() > end) sys.error(s"StreamingBench: $what not reached in $seconds s"); pollInto() }
      }
      def pollWhile(t: Thread): Unit = while (t.isAlive) pollInto() // the consumer keeps reading while the producer sends
      def pollFor(millis: Long): Unit = { val end = System.currentTimeMillis() + millis; while (System.currentTimeMillis() < end) pollInto() }
      def latencies(ids: Iterable[String]): Seq[Long] = ids.toSeq.flatMap(id => Option(seen.get(id)).map(_ - sent.get(id)))

      var driver = new Driver(cli, work.resolve("driver-1.log"))
      try {
        // 1. warm-up
        val warm = (0 until 20).map(_ => article())
        warm.foreach(send); producer.flush()
        waitFor("the warm-up records", 300)(warm.forall(w => seen.containsKey(w._1)))
        // 2. capacity: a backlog at once
        val backlog = (0 until o.backlog).map(_ => article())
        val t0 = System.currentTimeMillis()
        backlog.foreach(send); producer.flush()
        waitFor("the backlog", 600)(backlog.forall(b => seen.containsKey(b._1)))
        val drained = backlog.map(b => seen.get(b._1).longValue).max
        val capacity = o.backlog * 1000.0 / (drained - t0)
        println(f"StreamingBench: capacity: a backlog of ${o.backlog} records drained in ${(drained - t0) / 1000.0}%.1f s: $capacity%.1f records/s")
        // 3. steady state
        val rate = o.rate.getOrElse(math.max(1.0, math.floor(capacity / 2)))
        val (steadyThread, steadyIds) = paced(rate, o.seconds)
        pollWhile(steadyThread)
        waitFor("the steady-state records", 300)(steadyIds.asScala.forall(seen.containsKey))
        val ids = steadyIds.asScala.toSeq
        val lat = latencies(ids)
        val firstSent = sent.get(ids.head).longValue
        val lastSeen = ids.map(seen.get(_).longValue).max
        println(f"StreamingBench: steady state: ${ids.size} records at $rate%.1f records/s for ${o.seconds} s: " +
          f"throughput ${ids.size * 1000.0 / (lastSeen - firstSent)}%.1f records/s, latency p50 ${pct(lat, 50)} ms, " +
          f"p99 ${pct(lat, 99)} ms, max ${lat.max} ms")
        // 4. recovery: kill mid-stream, restart at once, keep producing
        val (liveThread, liveIds) = paced(rate, (o.after + 10).toDouble)
        pollFor(10000)
        driver.kill()
        val restarted = System.currentTimeMillis()
        val beforeRestart = liveIds.asScala.toSeq
        driver = new Driver(cli, work.resolve("driver-2.log"))
        // the new driver's first record: the first one its producer stamped after the restart
        def fromNewDriver = reader.all.iterator.filter(_.timestamp >= restarted)
        waitFor("the first record after the restart", 300)(fromNewDriver.hasNext)
        val firstOut = fromNewDriver.map(_.seenMillis).min - restarted
        waitFor("the records produced before the restart", 300)(beforeRestart.forall(seen.containsKey))
        val caughtUp = System.currentTimeMillis() - restarted
        pollWhile(liveThread)
        waitFor("the records produced after the restart", 300)(liveIds.asScala.forall(seen.containsKey))
        val after = liveIds.asScala.toSeq.filter(id => sent.get(id) > restarted + caughtUp)
        val latAfter = latencies(after)
        println(f"StreamingBench: recovery: SIGKILL after 10 s, restarted at once: first output ${firstOut / 1000.0}%.1f s after " +
          f"the restart, the ${beforeRestart.size} records produced before it all out after ${caughtUp / 1000.0}%.1f s; " +
          f"then ${after.size} records: latency p50 ${pct(latAfter, 50)} ms, p99 ${pct(latAfter, 99)} ms")
        val total = reader.all.size
        println(s"StreamingBench: ${seen.size} articles out in $total records (${total - seen.size} duplicates, at-least-once)")
      } finally { driver.stop(); reader.close(); producer.close() }
    } finally {
      broker.close()
      try TestSupport.deleteRecursively(work) catch { case _: java.io.IOException => () }
    }
  }
}
