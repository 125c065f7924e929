package pyner.sample

import java.nio.charset.StandardCharsets.UTF_8
import java.nio.file.{Files, Path, Paths}

import scala.jdk.CollectionConverters._

import org.scalatest.funsuite.AnyFunSuite

/** docs/scala.md shows code cut from the sample: each `<!-- snippet: NAME FILE -->` block must equal
  * the lines between `// START NAME` and `// END NAME` in FILE (indentation removed), so the page
  * never shows code that is not compiled and tested.
  */
class DocsSnippetsSpec extends AnyFunSuite {
  private val repo: Path = Paths.get(sys.props.getOrElse("pyner.repo", fail("pyner.repo is not set")))
  private val page = repo.resolve("docs/scala.md")

  private def dedent(lines: Seq[String]): Seq[String] = {
    val indent = lines.filter(_.trim.nonEmpty).map(_.takeWhile(_ == ' ').length).reduceOption(_ min _).getOrElse(0)
    lines.map(l => if (l.trim.isEmpty) "" else l.drop(indent))
  }

  private def source(file: Path, name: String): Seq[String] = {
    val lines = Files.readAllLines(file, UTF_8).asScala.toSeq
    val start = lines.indexWhere(_.trim == s"// START $name")
    val end = lines.indexWhere(_.trim == s"// END $name")
    assert(start >= 0 && end > start, s"$file has no // START $name ... // END $name")
    dedent(lines.slice(start + 1, end))
  }

  private val Marker = """<!-- snippet: (\S+) (\S+) -->""".r

  test("every snippet in docs/scala.md equals its marked source, and every marked source is shown") {
    val lines = Files.readAllLines(page, UTF_8).asScala.toSeq
    val shown = lines.zipWithIndex.collect { case (Marker(name, file), i) =>
      assert(lines(i + 1) == "```scala", s"docs/scala.md:${i + 2}: a ```scala block must follow the snippet marker")
      val close = lines.indexWhere(_ == "```", i + 2)
      val block = lines.slice(i + 2, close)
      val expected = source(repo.resolve(file), name)
      assert(block == expected, s"docs/scala.md:${i + 1}: snippet '$name' differs from $file\n--- docs\n${block.mkString("\n")}\n--- code\n${expected.mkString("\n")}")
      name
    }
    val marked = Files.list(repo.resolve("sbt-sample/src/main/scala/pyner/sample")).iterator().asScala.toSeq
      .flatMap(f => Files.readAllLines(f, UTF_8).asScala.map(_.trim).collect { case l if l.startsWith("// START ") => l.stripPrefix("// START ") })
    assert(shown.toSet == marked.toSet, s"marked in code but not shown: ${marked.toSet -- shown}; shown but not marked: ${shown.toSet -- marked}")
    assert(shown.size >= 5)
  }
}
