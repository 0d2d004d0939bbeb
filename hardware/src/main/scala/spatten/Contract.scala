package spatten

import chisel3._
import chisel3.util._

/** One field of a packet: `width` bits from bit `lo` of header word `word`.
  *
  * [[extract]] reads it from a command word, [[Packet.pack]] places it in a response word.
  */
case class Field(name: String, word: Int, lo: Int, width: Int, signed: Boolean = false) {
  require(width >= 1 && lo >= 0 && lo + width <= Contract.wordBits,
    s"field $name: bits [${lo + width - 1}:$lo] do not fit a ${Contract.wordBits}-bit word")
  /** The field's high bit. */
  def hi: Int = lo + width - 1
  /** The field's bits of the 64-bit word `w` (as UInt; `.asSInt` where `signed`). */
  def extract(w: UInt): UInt = w(hi, lo)
  /** The field's bits of `w` as a Bool (1-bit fields only). */
  def flag(w: UInt): Bool = {
    require(width == 1, s"field $name has $width bits, not a flag")
    w(lo)
  }
}

/** Elements after the header words: `lanesPerWord` lanes of `laneBits` each, lane `i` in
  * bits `[laneBits*i + laneBits-1 : laneBits*i]` of its word, `count` elements in all
  * (`count` names the field giving the number; for `attendResp.o` the command's `d`). */
case class Tail(name: String, laneBits: Int, lanesPerWord: Int, signed: Boolean, count: String) {
  require(laneBits * lanesPerWord <= Contract.wordBits, s"tail $name does not fit a word")
  /** Lane `i` of the word `w`. */
  def lane(w: UInt, i: Int): UInt = {
    require(i >= 0 && i < lanesPerWord, s"tail $name has no lane $i")
    w(laneBits * i + laneBits - 1, laneBits * i)
  }
  /** A word from its lanes (lane 0 lowest, each truncated or zero-extended to `laneBits`;
    * missing lanes and bits above them zero). */
  def pack(lanes: Seq[UInt]): UInt = {
    require(lanes.nonEmpty && lanes.size <= lanesPerWord, s"tail $name: ${lanes.size} lanes")
    Cat(lanes.reverse.map(l => l.pad(laneBits)(laneBits - 1, 0))).pad(Contract.wordBits)
  }
  /** Bits of a lane index within a word. */
  def laneIdxBits: Int = log2Ceil(lanesPerWord).max(1)
}

/** Repeated sections after a packet's header: `count` (a field of the packet) copies of
  * the section packet `packet`, each starting on a fresh word. */
case class Sections(packet: String, count: String)

/** A command or response packet: its header words' fields and its tails, in order, then
  * its `sections` (grouped ATTEND). A packet of direction "section" is only ever a
  * section of another (it has no opcode of its own unless it is also a response). */
case class Packet(name: String, direction: String, opcodes: Seq[String], headerWords: Int,
                  fields: Seq[Field], tails: Seq[Tail] = Nil, sections: Option[Sections] = None) {
  require(opcodes.forall(o => Contract.opcodes.exists(_._1 == o)), s"packet $name: unknown opcode in $opcodes")
  require(fields.forall(f => f.word >= 0 && f.word < headerWords), s"packet $name: field outside the header")
  require(fields.map(_.name).distinct.size == fields.size, s"packet $name: duplicate field names")
  for (w <- 0 until headerWords; a <- fields.filter(_.word == w); b <- fields.filter(_.word == w)
       if a.name < b.name)
    require(a.hi < b.lo || b.hi < a.lo, s"packet $name: fields ${a.name} and ${b.name} overlap")
  require(direction == "section" || fields.exists(f => f.name == "opcode" && f.word == 0 && f.lo == 0 && f.width == 8),
    s"packet $name: no opcode field in word 0 [7:0]")

  /** The field named `n`. */
  def apply(n: String): Field = fields.find(_.name == n).getOrElse(
    throw new IllegalArgumentException(s"packet $name has no field $n; fields: ${fields.map(_.name).mkString(", ")}"))
  /** The tail named `n`. */
  def tail(n: String): Tail = tails.find(_.name == n).getOrElse(
    throw new IllegalArgumentException(s"packet $name has no tail $n"))

  /** Header word `word` from named field values: each value truncated or zero-extended to
    * its field's width, fields not named and reserved bits zero. */
  def pack(word: Int, values: (String, UInt)*): UInt = {
    val named = values.toMap
    require(named.size == values.size, s"packet $name: a field given twice")
    named.keys.foreach { k =>
      require(apply(k).word == word, s"packet $name: field $k is in word ${apply(k).word}, not $word")
    }
    val inWord = fields.filter(_.word == word).sortBy(_.lo)
    var pos = 0
    val parts = scala.collection.mutable.ArrayBuffer[UInt]()
    for (f <- inWord) {
      if (f.lo > pos) parts += 0.U((f.lo - pos).W)
      parts += named.get(f.name).map(v => v.pad(f.width)(f.width - 1, 0)).getOrElse(0.U(f.width.W))
      pos = f.hi + 1
    }
    if (pos < Contract.wordBits) parts += 0.U((Contract.wordBits - pos).W)
    Cat(parts.reverse.toSeq)
  }
}

/** The hardware contract: opcodes and the layout of every command and response packet
  * (SPEC.md section 5), the single source of the field positions.
  *
  * The RTL decodes and packs through it ([[Field.extract]], [[Packet.pack]], [[Tail]]);
  * [[Contract.toJson]] writes it, with the parameters of the preset and of every preset
  * and the controller's state names, as `contract.json` (SPEC.md section 7) for the Python
  * side. Changing a field's position or width is a change here only.
  */
object Contract {
  val version: Int = 1
  val wordBits: Int = 64

  /** Opcode names and values, in order. */
  val opcodes: Seq[(String, Int)] = Seq(
    "ATTEND" -> 1, "TOPK_TOKENS" -> 2, "TOPK_HEADS" -> 3, "CLEAR" -> 4,
    "READ_IMPORTANCE" -> 5, "ATTEND_GROUP" -> 6, "ERROR" -> 0xff)
  private val opcodeMap = opcodes.toMap
  /** The value of the opcode named `name`. */
  def opcode(name: String): Int = opcodeMap.getOrElse(name,
    throw new IllegalArgumentException(s"unknown opcode $name"))

  private def f(name: String, word: Int, hi: Int, lo: Int): Field = Field(name, word, lo, hi - lo + 1)
  private val opcodeF = f("opcode", 0, 7, 0)
  private val tagF    = f("tag", 0, 23, 8)
  private def base(name: String, word: Int): Field = f(name, word, 63, 0)

  val attend: Packet = Packet("attend", "command", Seq("ATTEND"), 6, Seq(
    opcodeF, tagF, f("n", 0, 39, 24), f("valueTopK", 0, 55, 40), f("headId", 0, 63, 56),
    f("d", 1, 7, 0), f("kMsbBits", 1, 12, 8), f("kLsbBits", 1, 17, 13), f("vBits", 1, 22, 18),
    f("requant", 1, 23, 23), f("accumImportance", 1, 24, 24), f("scoreShift", 1, 30, 25),
    f("requantThreshold", 1, 47, 31), f("scoreScale", 1, 63, 48),
    base("kMsbBase", 2), base("kLsbBase", 3), base("vBase", 4), base("listBase", 5)),
    Seq(Tail("query", 16, 4, signed = true, "d")))

  /** Grouped ATTEND: the query heads sharing one K/V head and one token list. Words 1..5
    * as in [[attend]] (scoreShift, requantThreshold and scoreScale of word 1 unused: they
    * are per head); then `heads` sections [[attendHead]]. */
  val attendGroup: Packet = Packet("attendGroup", "command", Seq("ATTEND_GROUP"), 6, Seq(
    opcodeF, tagF, f("n", 0, 39, 24), f("heads", 0, 47, 40),
    f("d", 1, 7, 0), f("kMsbBits", 1, 12, 8), f("kLsbBits", 1, 17, 13), f("vBits", 1, 22, 18),
    f("requant", 1, 23, 23), f("accumImportance", 1, 24, 24),
    base("kMsbBase", 2), base("kLsbBase", 3), base("vBase", 4), base("listBase", 5)),
    sections = Some(Sections("attendHead", "heads")))

  /** One head of a grouped ATTEND: its word, then its query (`ceil(d/4)` words, `d` of
    * the group). `valueThresh` set: `valueTopK` is a probability threshold (Q.16), not a
    * count (SPEC 2 step 5). */
  val attendHead: Packet = Packet("attendHead", "section", Nil, 1, Seq(
    f("headId", 0, 7, 0), f("valueTopK", 0, 23, 8), f("scoreShift", 0, 29, 24),
    f("requantThreshold", 0, 46, 30), f("scoreScale", 0, 62, 47), f("valueThresh", 0, 63, 63)),
    Seq(Tail("query", 16, 4, signed = true, "d")))

  val topkTokens: Packet = Packet("topkTokens", "command", Seq("TOPK_TOKENS"), 2, Seq(
    opcodeF, tagF, f("n", 0, 39, 24), f("k", 0, 55, 40), base("listBase", 1)))

  val topkHeads: Packet = Packet("topkHeads", "command", Seq("TOPK_HEADS"), 1, Seq(
    opcodeF, tagF, f("n", 0, 39, 24), f("k", 0, 55, 40)))

  val clear: Packet = Packet("clear", "command", Seq("CLEAR"), 1, Seq(
    opcodeF, tagF, f("clearTok", 0, 24, 24), f("clearHead", 0, 25, 25)))

  val readImportance: Packet = Packet("readImportance", "command", Seq("READ_IMPORTANCE"), 2, Seq(
    opcodeF, tagF, f("n", 0, 39, 24), base("listBase", 1)))

  val attendResp: Packet = Packet("attendResp", "response", Seq("ATTEND"), 2, Seq(
    opcodeF, tagF, f("m", 0, 39, 24), f("requantized", 0, 40, 40), f("n", 0, 63, 48),
    f("pmax", 1, 16, 0), f("headId", 1, 24, 17), f("cycles", 1, 63, 32)),
    Seq(Tail("o", 64, 1, signed = true, "d"), Tail("sel", 1, 64, signed = false, "n")))

  /** Grouped ATTEND response: one header word, then one [[attendResp]] section per head,
    * in the command's head order (`last` only on the final word of the last). */
  val attendGroupResp: Packet = Packet("attendGroupResp", "response", Seq("ATTEND_GROUP"), 1, Seq(
    opcodeF, tagF, f("heads", 0, 31, 24), f("d", 0, 39, 32)),
    sections = Some(Sections("attendResp", "heads")))

  val topkResp: Packet = Packet("topkResp", "response", Seq("TOPK_TOKENS", "TOPK_HEADS"), 1, Seq(
    opcodeF, tagF, f("count", 0, 39, 24)),
    Seq(Tail("ids", 16, 4, signed = false, "count")))

  val clearResp: Packet = Packet("clearResp", "response", Seq("CLEAR"), 1, Seq(opcodeF, tagF))

  val readImportanceResp: Packet = Packet("readImportanceResp", "response", Seq("READ_IMPORTANCE"), 1, Seq(
    opcodeF, tagF, f("n", 0, 39, 24)),
    Seq(Tail("importance", 32, 1, signed = false, "n")))

  val errorResp: Packet = Packet("errorResp", "response", Seq("ERROR"), 1, Seq(
    opcodeF, tagF, f("badOpcode", 0, 39, 24)))

  val packets: Seq[Packet] = Seq(attend, topkTokens, topkHeads, clear, readImportance, attendGroup,
    attendHead, attendResp, topkResp, clearResp, readImportanceResp, errorResp, attendGroupResp)

  // The intake decodes word 0 before it knows the opcode, so the word-0 fields that
  // several commands have must sit at one position in all of them.
  for (pk <- Seq(topkTokens, topkHeads, readImportance)) {
    require(pk("n") == attend("n"), s"${pk.name}.n must sit where attend.n does")
    require(pk.fields.find(_.name == "k").forall(_.copy(name = "valueTopK") == attend("valueTopK")),
      s"${pk.name}.k must sit where attend.valueTopK does")
  }
  require(topkTokens("listBase") == readImportance("listBase"), "the list base word must agree")
  require(attendGroup("n") == attend("n"), "attendGroup.n must sit where attend.n does")
  for (x <- Seq("d", "kMsbBits", "kLsbBits", "vBits", "requant", "accumImportance", "kMsbBase", "kLsbBase",
                "vBase", "listBase"))
    require(attendGroup(x) == attend(x), s"attendGroup.$x must sit where attend.$x does (one decoder)")
  require(topkHeads.headerWords == 1 && clear.headerWords == 1, "TOPK_HEADS and CLEAR are one word")

  // ---------------------------------------------------------------------------------
  // JSON
  // ---------------------------------------------------------------------------------

  private def q(s: String): String = "\"" + s.flatMap {
    case '"' => "\\\""; case '\\' => "\\\\"; case c => c.toString
  } + "\""
  private def obj(kv: Seq[(String, String)], ind: String): String =
    kv.map { case (k, v) => s"$ind  ${q(k)}: $v" }.mkString("{\n", ",\n", s"\n$ind}")
  private def paramsObj(p: SpAttenParams, ind: String): String =
    obj(p.jsonFields.map {
      case (k, v: String) => k -> q(v)
      case (k, v)         => k -> v.toString
    }, ind)
  private def fieldJson(x: Field): String =
    s"""{"name": ${q(x.name)}, "word": ${x.word}, "lo": ${x.lo}, "width": ${x.width}, "signed": ${x.signed}}"""
  private def tailJson(t: Tail): String =
    s"""{"name": ${q(t.name)}, "laneBits": ${t.laneBits}, "lanesPerWord": ${t.lanesPerWord}, """ +
      s""""signed": ${t.signed}, "count": ${q(t.count)}}"""
  private def packetJson(pk: Packet, ind: String): String = {
    val i2 = ind + "    "
    obj(Seq(
      "direction" -> q(pk.direction),
      "opcode" -> pk.opcodes.headOption.map(q).getOrElse("null"),
      "opcodes" -> pk.opcodes.map(q).mkString("[", ", ", "]"),
      "headerWords" -> pk.headerWords.toString,
      "fields" -> pk.fields.map(i2 + fieldJson(_)).mkString("[\n", ",\n", s"\n$ind  ]"),
      "tails" -> (if (pk.tails.isEmpty) "[]" else pk.tails.map(i2 + tailJson(_)).mkString("[\n", ",\n", s"\n$ind  ]")),
      "sections" -> pk.sections.map(x => s"""{"packet": ${q(x.packet)}, "count": ${q(x.count)}}""").getOrElse("null")
    ), ind)
  }
  private def names(ns: Seq[String]): String = ns.map(q).mkString("[", ", ", "]")

  /** The contract for the preset `p` as JSON (schema: SPEC.md section 7). */
  def toJson(p: SpAttenParams): String = obj(Seq(
    "contractVersion" -> version.toString,
    "preset" -> q(p.preset),
    "params" -> paramsObj(p, "  "),
    "presets" -> obj(SpAttenParams.all.map(x => x.preset -> paramsObj(x, "    ")), "  "),
    "wordBits" -> wordBits.toString,
    "opcodes" -> opcodes.map { case (k, v) => s"${q(k)}: $v" }.mkString("{", ", ", "}"),
    "packets" -> obj(packets.map(pk => pk.name -> packetJson(pk, "    ")), "  "),
    "states" -> s"""{"front": ${names(CtrlState.names)}, "back": ${names(BackState.names)}, "resp": ${names(RespState.names)}, "keyRowsWait": ${names(Seq("no", "yes"))}}"""
  ), "") + "\n"
}

/** Command opcodes and the error opcode of the response stream, from [[Contract.opcodes]]. */
object Opcode {
  val attend: Int         = Contract.opcode("ATTEND")
  val topkTokens: Int     = Contract.opcode("TOPK_TOKENS")
  val topkHeads: Int      = Contract.opcode("TOPK_HEADS")
  val clear: Int          = Contract.opcode("CLEAR")
  val readImportance: Int = Contract.opcode("READ_IMPORTANCE")
  val attendGroup: Int    = Contract.opcode("ATTEND_GROUP")
  val error: Int          = Contract.opcode("ERROR")
}

/** Every response word the hardware writes, packed through the [[Contract]] layout: the
  * one place that builds response words (the controller's front and back ends and the
  * [[ResponseWriter]] call these).
  */
object ResponseWords {
  import Contract._

  private val idTail = topkResp.tail("ids")
  private val selTail = attendResp.tail("sel")
  // The front end builds the TOPK_*, READ_IMPORTANCE and CLEAR headers with one packer,
  // whatever the opcode: their count fields must coincide.
  require(readImportanceResp("n").copy(name = "count") == topkResp("count"),
    "READ_IMPORTANCE's n and TOPK's count must share their position")
  require(clearResp.fields.forall(f => topkResp.fields.contains(f)), "CLEAR's header must be TOPK's without count")

  /** Ids in one id word, and the bits of one id. */
  val idsPerWord: Int = idTail.lanesPerWord
  val idBits: Int = idTail.laneBits

  /** ATTEND response word 0. */
  def attendHeader(tag: UInt, m: UInt, n: UInt, requantized: Bool): UInt =
    attendResp.pack(0, "opcode" -> Opcode.attend.U(attendResp("opcode").width.W), "tag" -> tag, "m" -> m,
      "requantized" -> requantized, "n" -> n)
  /** ATTEND response word 1 (also of each section of a grouped response). */
  def attendWord1(pmax: UInt, headId: UInt, cycles: UInt): UInt =
    attendResp.pack(1, "pmax" -> pmax, "headId" -> headId, "cycles" -> cycles)
  /** The header word of a grouped ATTEND response. */
  def groupHeader(tag: UInt, heads: UInt, d: UInt): UInt =
    attendGroupResp.pack(0, "opcode" -> Opcode.attendGroup.U(attendGroupResp("opcode").width.W), "tag" -> tag,
      "heads" -> heads, "d" -> d)
  /** An ATTEND output word. */
  def o(x: SInt): UInt = attendResp.tail("o").pack(Seq(x.asUInt))
  /** A response id word, lane 0 first. */
  def ids(lanes: Seq[UInt]): UInt = idTail.pack(lanes)
  /** Positions a selection word of an ATTEND response covers (bit i: position 64 w + i). */
  val selPerWord: Int = selTail.lanesPerWord
  /** An ATTEND selection word: bit `i` set when list position `64 w + i` is selected. */
  def sel(bits: UInt): UInt = selTail.pack(bits.asBools)
  /** The header of a TOPK_TOKENS / TOPK_HEADS (`count` kept), READ_IMPORTANCE (`count` =
    * n) or CLEAR (`count` = 0) response. */
  def header(opcode: UInt, tag: UInt, count: UInt): UInt =
    topkResp.pack(0, "opcode" -> opcode, "tag" -> tag, "count" -> count)
  /** A READ_IMPORTANCE value word. */
  def importance(x: UInt): UInt = readImportanceResp.tail("importance").pack(Seq(x))
  /** The error response for a command with opcode `badOpcode`. */
  def error(tag: UInt, badOpcode: UInt): UInt =
    errorResp.pack(0, "opcode" -> Opcode.error.U(errorResp("opcode").width.W), "tag" -> tag, "badOpcode" -> badOpcode)
}
