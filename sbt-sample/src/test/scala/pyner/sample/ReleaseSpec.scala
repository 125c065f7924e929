package pyner.sample

import java.nio.file.{Files, Path, Paths}
import java.security.MessageDigest

import dev.pyner.PynerModel
import org.scalatest.funsuite.AnyFunSuite

/** The sample consumes pyner-jvm as a user would: the staged release (dist/maven, `make jvm-release`)
  * as a plain file repository, never ~/.m2 (sbtw lists no maven-local).
  */
class ReleaseSpec extends AnyFunSuite {
  private val repo: Path = Paths.get(sys.props.getOrElse("pyner.repo", fail("pyner.repo is not set")))

  test("PynerModel is loaded from the staged release's jar in dist/maven, which matches its .sha1") {
    val version = PynerModel.version()
    val staged = repo.resolve(s"dist/maven/dev/pyner/pyner-jvm/$version/pyner-jvm-$version.jar").toRealPath()
    val loadedFrom = Paths.get(classOf[PynerModel].getProtectionDomain.getCodeSource.getLocation.toURI).toRealPath()
    assert(loadedFrom == staged, s"dev.pyner.PynerModel came from $loadedFrom, not the staged $staged")
    val sha1 = MessageDigest.getInstance("SHA-1").digest(Files.readAllBytes(staged)).map("%02x".format(_)).mkString
    val published = new String(Files.readAllBytes(Paths.get(staged.toString + ".sha1")), "US-ASCII").trim.take(40)
    assert(sha1 == published, s"$staged has sha1 $sha1, its .sha1 says $published")
  }

  test("the sample's Scala version and Spark version are one of the tested pairs") {
    val scalaVersion = scala.util.Properties.versionNumberString
    val spark = org.apache.spark.SPARK_VERSION
    val pair = (scalaVersion.split('.').take(2).mkString("."), spark.split('.').take(2).mkString("."))
    assert(Set(("2.12", "3.5"), ("2.13", "4.1")).contains(pair), s"Scala $scalaVersion with Spark $spark is not a tested pair")
  }
}
