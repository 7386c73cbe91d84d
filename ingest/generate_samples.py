#!/usr/bin/env python3
"""Generate the Lore sample corpus and the lore-ingest loader test fixtures.

This script is the single source of truth for everything under

    ingest/samples/**                        (fictional "Acme Robotics" knowledge base)
    ingest/samples.toml                      (source configuration for `lore ingest`)
    crates/lore-ingest/tests/fixtures/**     (loader test fixtures, except README.md)

except the HTML files (ingest/samples/engineering/runbooks/deploy-rollback.html and the
fixture sample.html), which are written by hand: HTML is source text already, and a copy of
it here would only have to be kept in step.

It uses only the Python 3.11 standard library. Output is byte-for-byte
deterministic: fixed timestamps, fixed seeds, no dependence on the clock,
locale or file-system order. PDFs are produced by a tiny hand-written PDF
writer (Helvetica, WinAnsiEncoding, BT/ET + Td/Tj), DOCX files by writing the
Office Open XML parts into a zip with fixed entry dates, and the encrypted
fixture uses the PDF Standard Security Handler (V1/R2, 40-bit RC4) implemented
here with hashlib (MD5) and a small RC4.

Usage:
    python3 ingest/generate_samples.py           # (re)write all files
    python3 ingest/generate_samples.py --check   # exit 1 if any file on disk differs
"""

from __future__ import annotations

import argparse
import hashlib
import struct
import sys
import zipfile
import zlib
from pathlib import Path
from xml.sax.saxutils import escape as xml_escape

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SAMPLES = HERE / "samples"
FIXTURES = REPO / "crates" / "lore-ingest" / "tests" / "fixtures"

# One fixed moment for every embedded timestamp.
PDF_DATE = "D:20240115090000Z"
W3C_DATE = "2024-01-15T09:00:00Z"
ZIP_DATE = (2024, 1, 15, 9, 0, 0)


# ---------------------------------------------------------------------------
# PDF writer
# ---------------------------------------------------------------------------

# Approximate Helvetica advance widths (1/1000 em), used only for word wrapping.
_HELV_WIDTHS = {
    " ": 278, "!": 278, '"': 355, "#": 556, "$": 556, "%": 889, "&": 667, "'": 191,
    "(": 333, ")": 333, "*": 389, "+": 584, ",": 278, "-": 333, ".": 278, "/": 278,
    ":": 278, ";": 278, "<": 584, "=": 584, ">": 584, "?": 556, "@": 1015,
    "[": 278, "\\": 278, "]": 278, "_": 556, "`": 333, "{": 334, "|": 260, "}": 334,
    "A": 667, "B": 667, "C": 722, "D": 722, "E": 667, "F": 611, "G": 778, "H": 722,
    "I": 278, "J": 500, "K": 667, "L": 556, "M": 833, "N": 722, "O": 778, "P": 667,
    "Q": 778, "R": 722, "S": 667, "T": 611, "U": 722, "V": 667, "W": 944, "X": 667,
    "Y": 667, "Z": 611,
    "a": 556, "b": 556, "c": 500, "d": 556, "e": 556, "f": 278, "g": 556, "h": 556,
    "i": 222, "j": 222, "k": 500, "l": 222, "m": 833, "n": 556, "o": 556, "p": 556,
    "q": 556, "r": 333, "s": 500, "t": 278, "u": 556, "v": 500, "w": 722, "x": 500,
    "y": 500, "z": 500, "\u2014": 1000, "\u2022": 350,
}


def text_width(text: str, size: float, bold: bool = False) -> float:
    w = sum(_HELV_WIDTHS.get(ch, 556) for ch in text) / 1000.0 * size
    return w * 1.06 if bold else w


def wrap(text: str, size: float, max_width: float, bold: bool = False) -> list[str]:
    lines: list[str] = []
    cur = ""
    for word in text.split():
        cand = word if not cur else cur + " " + word
        if cur and text_width(cand, size, bold) > max_width:
            lines.append(cur)
            cur = word
        else:
            cur = cand
    if cur:
        lines.append(cur)
    return lines


def pdf_str(text: str) -> bytes:
    """A PDF literal string, WinAnsi (cp1252) encoded, non-ASCII as octal escapes."""
    out = bytearray(b"(")
    for b in text.encode("cp1252"):
        if b in (0x5C, 0x28, 0x29):  # \ ( )
            out += b"\\" + bytes([b])
        elif b < 0x20 or b > 0x7E:
            out += b"\\%03o" % b
        else:
            out.append(b)
    out += b")"
    return bytes(out)


def pdf_stream(data: bytes, compress: bool) -> bytes:
    if compress:
        data = zlib.compress(data, 9)
        return b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(data) + data + b"\nendstream"
    return b"<< /Length %d >>\nstream\n" % len(data) + data + b"\nendstream"


def pdf_assemble(objects: dict[int, bytes], trailer: bytes) -> bytes:
    """Serialize numbered objects (1..N, generation 0) with a correct xref table."""
    n = max(objects)
    assert sorted(objects) == list(range(1, n + 1)), "object numbers must be dense"
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = {}
    for num in range(1, n + 1):
        offsets[num] = len(out)
        out += b"%d 0 obj\n" % num + objects[num] + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n" % (n + 1)
    out += b"0000000000 65535 f \n"
    for num in range(1, n + 1):
        out += b"%010d 00000 n \n" % offsets[num]
    out += b"trailer\n<< /Size %d " % (n + 1) + trailer + b" >>\n"
    out += b"startxref\n%d\n" % xref + b"%%EOF\n"
    return bytes(out)


FONT_REGULAR = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"
FONT_BOLD = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica-Bold /Encoding /WinAnsiEncoding >>"

PAGE_W, PAGE_H, MARGIN = 612, 792, 72

# block kind -> (font, size, leading, space before)
_STYLES = {
    "title": ("F2", 18, 24, 0),
    "subtitle": ("F1", 10, 14, 0),
    "h": ("F2", 13, 18, 12),
    "p": ("F1", 11, 15, 6),
    "li": ("F1", 11, 15, 2),
}


def layout_page(blocks: list[tuple[str, str]], footer: str) -> bytes:
    """Lay out headings/paragraphs/bullets top-down; emit BT/ET with Td + Tj."""
    max_w = PAGE_W - 2 * MARGIN
    placed: list[tuple[str, int, float, float, str]] = []  # font, size, x, y, text
    y = PAGE_H - 56
    for kind, text in blocks:
        font, size, lead, before = _STYLES[kind]
        if placed:
            y -= before
        bold = font == "F2"
        if kind == "li":
            lines = wrap(text, size, max_w - 14)
            for i, line in enumerate(lines):
                if i == 0:
                    placed.append((font, size, MARGIN + 4, y, "\u2022"))
                placed.append((font, size, MARGIN + 14, y, line))
                y -= lead
        else:
            for line in wrap(text, size, max_w, bold):
                placed.append((font, size, MARGIN, y, line))
                y -= lead
    assert y > 60, f"page overflow (y={y}) starting with {blocks[0][1]!r}"

    ops = [b"BT"]
    cur_font = None
    px, py = 0.0, 0.0
    for font, size, x, ly, text in placed:
        if (font, size) != cur_font:
            ops.append(b"/%s %d Tf" % (font.encode(), size))
            cur_font = (font, size)
        ops.append(b"%g %g Td" % (x - px, ly - py))
        px, py = x, ly
        ops.append(pdf_str(text) + b" Tj")
    ops.append(b"ET")
    # Footer in its own text object, positioned absolutely.
    ops.append(b"BT")
    ops.append(b"/F1 8 Tf")
    ops.append(b"%d 40 Td" % MARGIN)
    ops.append(pdf_str(footer) + b" Tj")
    ops.append(b"ET")
    return b"\n".join(ops) + b"\n"


def text_pdf(pages: list[bytes], title: str, author: str, subject: str, lang: str,
             compress: bool = True) -> bytes:
    """Assemble a PDF from ready-made page content streams (Helvetica + Helvetica-Bold)."""
    objs: dict[int, bytes] = {}
    n_pages = len(pages)
    page_nums = [6 + 2 * i for i in range(n_pages)]
    objs[1] = b"<< /Type /Catalog /Pages 2 0 R /Lang " + pdf_str(lang) + b" >>"
    kids = b" ".join(b"%d 0 R" % p for p in page_nums)
    objs[2] = b"<< /Type /Pages /Kids [" + kids + b"] /Count %d >>" % n_pages
    objs[3] = FONT_REGULAR
    objs[4] = FONT_BOLD
    objs[5] = (b"<< /Title " + pdf_str(title) + b" /Author " + pdf_str(author)
               + b" /Subject " + pdf_str(subject)
               + b" /Producer (Lore generate_samples.py) /CreationDate " + pdf_str(PDF_DATE)
               + b" /ModDate " + pdf_str(PDF_DATE) + b" >>")
    for pnum, content in zip(page_nums, pages):
        objs[pnum] = (b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 %d %d] " % (PAGE_W, PAGE_H)
                      + b"/Resources << /Font << /F1 3 0 R /F2 4 0 R >> >> /Contents %d 0 R >>" % (pnum + 1))
        objs[pnum + 1] = pdf_stream(content, compress)
    return pdf_assemble(objs, b"/Root 1 0 R /Info 5 0 R")


# --- Standard Security Handler, V1 / R2 (40-bit RC4) -----------------------

_PDF_PAD = bytes.fromhex("28BF4E5E4E758A4164004E56FFFA01082E2E00B6D0683E802F0CA9FE6453697A")


def rc4(key: bytes, data: bytes) -> bytes:
    s = list(range(256))
    j = 0
    for i in range(256):
        j = (j + s[i] + key[i % len(key)]) & 0xFF
        s[i], s[j] = s[j], s[i]
    out = bytearray()
    i = j = 0
    for byte in data:
        i = (i + 1) & 0xFF
        j = (j + s[i]) & 0xFF
        s[i], s[j] = s[j], s[i]
        out.append(byte ^ s[(s[i] + s[j]) & 0xFF])
    return bytes(out)


def _pad_pw(pw: str) -> bytes:
    return (pw.encode("latin-1") + _PDF_PAD)[:32]


def r2_security(user_pw: str, owner_pw: str, p: int, id0: bytes) -> tuple[bytes, bytes, bytes]:
    """Return (O, U, file_key) per PDF 1.7 Algorithms 2, 3 and 4 (revision 2)."""
    o_key = hashlib.md5(_pad_pw(owner_pw)).digest()[:5]          # Algorithm 3
    o_val = rc4(o_key, _pad_pw(user_pw))
    h = hashlib.md5()                                             # Algorithm 2
    h.update(_pad_pw(user_pw))
    h.update(o_val)
    h.update(struct.pack("<i", p))
    h.update(id0)
    file_key = h.digest()[:5]
    u_val = rc4(file_key, _PDF_PAD)                               # Algorithm 4
    return o_val, u_val, file_key


def object_key(file_key: bytes, num: int, gen: int = 0) -> bytes:
    """Algorithm 1: per-object RC4 key."""
    h = hashlib.md5(file_key + struct.pack("<I", num)[:3] + struct.pack("<I", gen)[:2]).digest()
    return h[: min(len(file_key) + 5, 16)]


# ---------------------------------------------------------------------------
# DOCX writer
# ---------------------------------------------------------------------------

W_NS = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
R_NS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"


def _runs_xml(runs: list[tuple[str, bool]]) -> str:
    """Runs of (text, bold). '\\t' becomes <w:tab/>, '\\n' becomes <w:br/>."""
    out = []
    for text, bold in runs:
        rpr = "<w:rPr><w:b/></w:rPr>" if bold else ""
        parts = []
        buf = ""
        for ch in text:
            if ch in "\t\n":
                if buf:
                    parts.append(f'<w:t xml:space="preserve">{xml_escape(buf)}</w:t>')
                    buf = ""
                parts.append("<w:tab/>" if ch == "\t" else "<w:br/>")
            else:
                buf += ch
        if buf:
            parts.append(f'<w:t xml:space="preserve">{xml_escape(buf)}</w:t>')
        out.append(f"<w:r>{rpr}{''.join(parts)}</w:r>")
    return "".join(out)


def _para_xml(style: str | None, runs: list[tuple[str, bool]]) -> str:
    ppr = f'<w:pPr><w:pStyle w:val="{style}"/></w:pPr>' if style and style != "Normal" else ""
    return f"<w:p>{ppr}{_runs_xml(runs)}</w:p>"


def _table_xml(rows: list[list[str]], widths: list[int]) -> str:
    grid = "".join(f'<w:gridCol w:w="{w}"/>' for w in widths)
    trs = []
    for r, row in enumerate(rows):
        tcs = []
        for text, w in zip(row, widths):
            tcs.append(f'<w:tc><w:tcPr><w:tcW w:w="{w}" w:type="dxa"/></w:tcPr>'
                       f"{_para_xml(None, [(text, r == 0)])}</w:tc>")
        trs.append("<w:tr>" + "".join(tcs) + "</w:tr>")
    return ('<w:tbl><w:tblPr><w:tblStyle w:val="TableGrid"/><w:tblW w:w="0" w:type="auto"/>'
            f"</w:tblPr><w:tblGrid>{grid}</w:tblGrid>{''.join(trs)}</w:tbl>")


def docx(blocks: list[tuple], title: str, creator: str, lang: str, description: str) -> bytes:
    """blocks: (style, text) | ("runs", style, [(text, bold), ...]) | ("table", rows, widths)."""
    body = []
    for block in blocks:
        if block[0] == "table":
            body.append(_table_xml(block[1], block[2]))
        elif block[0] == "runs":
            body.append(_para_xml(block[1], block[2]))
        else:
            body.append(_para_xml(block[0], [(block[1], False)]))
    document = (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        f'<w:document xmlns:w="{W_NS}" xmlns:r="{R_NS}"><w:body>'
        + "".join(body)
        + '<w:sectPr><w:pgSz w:w="12240" w:h="15840"/>'
        '<w:pgMar w:top="1440" w:right="1440" w:bottom="1440" w:left="1440" '
        'w:header="720" w:footer="720" w:gutter="0"/></w:sectPr>'
        "</w:body></w:document>"
    )

    def style(sid: str, name: str, ppr: str, rpr: str, based: str | None = "Normal") -> str:
        b = f'<w:basedOn w:val="{based}"/>' if based else ""
        return (f'<w:style w:type="paragraph" w:styleId="{sid}"><w:name w:val="{name}"/>{b}'
                f'<w:next w:val="Normal"/><w:qFormat/><w:pPr>{ppr}</w:pPr><w:rPr>{rpr}</w:rPr></w:style>')

    styles = (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        f'<w:styles xmlns:w="{W_NS}">'
        '<w:docDefaults><w:rPrDefault><w:rPr><w:rFonts w:ascii="Calibri" w:hAnsi="Calibri"/>'
        f'<w:sz w:val="22"/><w:lang w:val="{lang}"/></w:rPr></w:rPrDefault>'
        '<w:pPrDefault><w:pPr><w:spacing w:after="160" w:line="259" w:lineRule="auto"/></w:pPr>'
        "</w:pPrDefault></w:docDefaults>"
        '<w:style w:type="paragraph" w:default="1" w:styleId="Normal"><w:name w:val="Normal"/><w:qFormat/></w:style>'
        + style("Title", "Title", '<w:spacing w:after="240"/>', '<w:b/><w:sz w:val="48"/>')
        + style("Heading1", "heading 1", '<w:keepNext/><w:spacing w:before="360"/><w:outlineLvl w:val="0"/>',
                '<w:b/><w:sz w:val="32"/>')
        + style("Heading2", "heading 2", '<w:keepNext/><w:spacing w:before="200"/><w:outlineLvl w:val="1"/>',
                '<w:b/><w:sz w:val="26"/>')
        + style("ListBullet", "List Bullet", '<w:ind w:left="720" w:hanging="360"/>', "")
        + '<w:style w:type="table" w:styleId="TableGrid"><w:name w:val="Table Grid"/>'
        '<w:tblPr><w:tblBorders><w:top w:val="single" w:sz="4" w:space="0" w:color="auto"/>'
        '<w:left w:val="single" w:sz="4" w:space="0" w:color="auto"/>'
        '<w:bottom w:val="single" w:sz="4" w:space="0" w:color="auto"/>'
        '<w:right w:val="single" w:sz="4" w:space="0" w:color="auto"/>'
        '<w:insideH w:val="single" w:sz="4" w:space="0" w:color="auto"/>'
        '<w:insideV w:val="single" w:sz="4" w:space="0" w:color="auto"/></w:tblBorders></w:tblPr></w:style>'
        "</w:styles>"
    )
    content_types = (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
        '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
        '<Default Extension="xml" ContentType="application/xml"/>'
        '<Override PartName="/word/document.xml" '
        'ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/>'
        '<Override PartName="/word/styles.xml" '
        'ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.styles+xml"/>'
        '<Override PartName="/docProps/core.xml" '
        'ContentType="application/vnd.openxmlformats-package.core-properties+xml"/>'
        '<Override PartName="/docProps/app.xml" '
        'ContentType="application/vnd.openxmlformats-officedocument.extended-properties+xml"/>'
        "</Types>"
    )
    rels = (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
        '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/'
        'relationships/officeDocument" Target="word/document.xml"/>'
        '<Relationship Id="rId2" Type="http://schemas.openxmlformats.org/package/2006/'
        'relationships/metadata/core-properties" Target="docProps/core.xml"/>'
        '<Relationship Id="rId3" Type="http://schemas.openxmlformats.org/officeDocument/2006/'
        'relationships/extended-properties" Target="docProps/app.xml"/>'
        "</Relationships>"
    )
    doc_rels = (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
        '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/'
        'relationships/styles" Target="styles.xml"/>'
        "</Relationships>"
    )
    core = (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        '<cp:coreProperties xmlns:cp="http://schemas.openxmlformats.org/package/2006/metadata/core-properties" '
        'xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:dcterms="http://purl.org/dc/terms/" '
        'xmlns:dcmitype="http://purl.org/dc/dcmitype/" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
        f"<dc:title>{xml_escape(title)}</dc:title>"
        f"<dc:description>{xml_escape(description)}</dc:description>"
        f"<dc:creator>{xml_escape(creator)}</dc:creator>"
        f"<dc:language>{lang}</dc:language>"
        f"<cp:lastModifiedBy>{xml_escape(creator)}</cp:lastModifiedBy>"
        f'<dcterms:created xsi:type="dcterms:W3CDTF">{W3C_DATE}</dcterms:created>'
        f'<dcterms:modified xsi:type="dcterms:W3CDTF">{W3C_DATE}</dcterms:modified>'
        "</cp:coreProperties>"
    )
    app = (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        '<Properties xmlns="http://schemas.openxmlformats.org/officeDocument/2006/extended-properties">'
        "<Application>Lore generate_samples.py</Application><Company>Acme Robotics</Company>"
        "</Properties>"
    )
    parts = [
        ("[Content_Types].xml", content_types),
        ("_rels/.rels", rels),
        ("docProps/core.xml", core),
        ("docProps/app.xml", app),
        ("word/document.xml", document),
        ("word/styles.xml", styles),
        ("word/_rels/document.xml.rels", doc_rels),
    ]
    return deterministic_zip(parts)


def deterministic_zip(parts: list[tuple[str, str]]) -> bytes:
    import io

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, text in parts:
            info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 0
            info.external_attr = 0
            zf.writestr(info, text.encode("utf-8"), compresslevel=9)
    return buf.getvalue()


# ---------------------------------------------------------------------------
# Corpus content
# ---------------------------------------------------------------------------


EMPLOYEE_HANDBOOK = """\
---
title: Acme Robotics Employee Handbook
lang: en
owner: People Team
updated: 2024-01-15
---

# Acme Robotics Employee Handbook

Welcome to Acme Robotics. This handbook applies to all employees of Acme Robotics, Inc. in the
United States and Canada. Employees of Acme Robotics Iberia S.L. (Barcelona office) should read the
*Manual del empleado*, which reflects Spanish law and local practice. If anything here conflicts
with your employment contract or with local law, the contract and the law take precedence.
Questions go to the People Team at people@acme.example or in the #ask-people chat channel.

## About Acme Robotics

Acme Robotics designs and builds autonomous mobile robots for warehouses and factories. Our
flagship products are the **Acme Picker P3** robot and **FleetOS**, the software that coordinates
robot fleets. Headquarters are at 1200 Example Boulevard, Austin, Texas. We also have a sales
office in Chicago and an engineering office in Barcelona. The CEO is Margaret Okafor; the VP of
People is Daniel Reyes.

## Office Hours

The Austin and Chicago offices are open from 7:00 a.m. to 8:00 p.m., Monday to Friday. Badge
access outside those hours must be requested from Facilities (facilities@acme.example) at least
one business day in advance.

Core collaboration hours are **10:00 a.m. to 4:00 p.m. in your local time zone**. Schedule
recurring meetings inside this window and be reachable on chat during it. Outside core hours you
are free to arrange your day, as long as your team knows how to reach you.

The offices are closed on the 11 company holidays, which are published every December in
PeopleHub (peoplehub.acme.example).

## Vacation Policy

Every full-time employee receives **25 days of paid vacation per calendar year**, in addition to
company holidays. Vacation accrues monthly (about 2.08 days per month) starting on your first day.
Part-time employees accrue vacation in proportion to their scheduled hours.

- Request vacation in PeopleHub at least two weeks in advance for absences of three days or
  longer; shorter absences need one business day of notice.
- Your manager approves or declines a request within three business days.
- You may **carry over a maximum of 5 unused vacation days** into the next calendar year.
  Carried-over days must be used by March 31, after which they expire.
- Unused vacation beyond the 5-day carry-over is not paid out, except where state or provincial
  law requires it.
- Please take at least one block of five consecutive working days off each year. Rest is part
  of the job.

Sick leave is separate from vacation: you get 10 paid sick days per year, and you do not need a
doctor's note for absences of up to three consecutive days.

## Parental Leave

All parents (birth, adoptive and foster) receive **16 weeks of fully paid parental leave**.
Employees become eligible after 90 days of employment. The leave can be taken in one block or in
up to two blocks, and must be completed within 12 months of the birth or placement. Birth parents
may add any medically required pregnancy leave on top of the 16 weeks.

Tell your manager and the People Team at least 8 weeks before the expected start date whenever
possible. During leave your health benefits continue unchanged. When you come back you have a
four-week phase-in period working 60% of your usual schedule on full pay.

## Remote Work Policy

Acme Robotics is a hybrid company. Employees attached to an office work from the office on
**Tuesdays and Thursdays** (our in-office collaboration days) and may work remotely up to three
days per week. Lab and manufacturing roles that need hardware on site are exempt and agree their
schedule with their manager.

- Fully remote arrangements require written approval from your VP and the People Team, and are
  reviewed every 12 months.
- You may work from another country for up to 20 working days per year. Tell the People Team
  before you travel, because tax and immigration rules apply.
- Remote employees receive a one-time home-office stipend of $500 and a monthly internet
  allowance of $50, both paid through payroll.
- Outside the office network, company systems may only be accessed from a company-managed laptop
  connected through the Acme Connect VPN (see the VPN setup guide from IT).

## Expense Policy

Acme reimburses reasonable business expenses that you pay personally. Submit them in the Expenses
section of PeopleHub within 30 days of the purchase.

- **Meals** while traveling or with customers: up to **$60 per day** per person, including tax
  and tip. Alcohol is reimbursable only at customer dinners and always within the same $60 daily
  limit.
- Receipts are required for every expense over $25.
- Team events need prior approval from your director; the budget is $75 per person per quarter.
- Software subscriptions must be requested through IT, not expensed.
- Books, courses and conferences are paid from your annual learning budget of $1,500.
- Your manager approves expenses up to $1,000; anything above $1,000 also needs your
  director's approval.

Reimbursements are paid with the next payroll after approval. Flights, hotels and rental cars
follow the separate Travel Policy.

## Equipment and Security

New employees receive a company laptop on their first day. Laptops must use full-disk encryption,
and lost or stolen devices must be reported to security@acme.example within 24 hours. The
Information Security Policy describes the password rules and the data classification levels.

## Code of Conduct

We expect everyone to treat colleagues, customers and partners with respect. Harassment and
discrimination are not tolerated. Concerns can be raised with your manager, with the People Team,
or anonymously through the Ethics Line at ethics.acme.example. Retaliation against anyone who
raises a concern in good faith is itself a violation of this handbook.
"""

MANUAL_DEL_EMPLEADO = """\
---
title: Manual del empleado de Acme Robotics Iberia
lang: es
owner: Equipo de Personas
updated: 2024-01-15
---

# Manual del empleado — Acme Robotics Iberia

Este manual se aplica a todas las personas empleadas por Acme Robotics Iberia S.L. en la oficina
de Barcelona (Carrer de l'Exemple 42, 08018 Barcelona) y a quienes teletrabajan desde España. Para
cualquier duda, escribe a personas@acme.example o al canal #pregunta-a-personas. Si algo de este
manual contradice el convenio colectivo o la legislación vigente, prevalecen estos últimos.

## Horario de oficina

La oficina de Barcelona abre de lunes a viernes de 8:00 a 19:00. El horario es flexible: la
entrada puede hacerse entre las 8:00 y las 10:00, y la franja de colaboración obligatoria es de
**10:00 a 14:00**. En julio y agosto se aplica la **jornada intensiva, de 8:00 a 15:00**.

El registro de jornada es obligatorio por ley y se hace cada día en PeopleHub
(peoplehub.acme.example).

## Vacaciones

Cada persona empleada a tiempo completo disfruta de **25 días laborables de vacaciones pagadas**
al año, además de los 14 festivos oficiales (nacionales, autonómicos y locales de Barcelona).

- Las vacaciones se solicitan en PeopleHub con al menos 15 días de antelación.
- Al menos 10 días laborables deben disfrutarse seguidos entre el 15 de junio y el 15 de
  septiembre.
- Se pueden trasladar como máximo **5 días** no disfrutados al año siguiente, y deben usarse
  antes del 31 de marzo.
- Los días no disfrutados no se pagan, salvo en la liquidación al terminar la relación laboral.

## Teletrabajo

Acme Robotics Iberia sigue un modelo híbrido. Se puede teletrabajar **hasta 3 días por semana**;
los martes y jueves son días presenciales de colaboración en la oficina. El acuerdo de
teletrabajo se firma por escrito, como exige la Ley 10/2021 de trabajo a distancia.

- Compensación por gastos de teletrabajo: **40 € al mes**, incluidos en la nómina.
- El teletrabajo completo (100 % en remoto) necesita la aprobación de la dirección del área y
  del Equipo de Personas.
- Se puede trabajar desde otro país de la Unión Europea un máximo de 15 días laborables al año,
  avisando antes al Equipo de Personas.
- Fuera de la oficina, el acceso a los sistemas de la empresa se hace siempre a través de la VPN
  Acme Connect.

## Gastos y dietas

La empresa reembolsa los gastos profesionales razonables. Los gastos se registran en PeopleHub en
un plazo máximo de 30 días, con la factura o el tique correspondiente.

- Dietas de comida en viajes de trabajo: hasta **45 € por día en España** y hasta 60 € por día en
  el extranjero.
- Kilometraje con vehículo propio: 0,26 € por kilómetro.
- El alojamiento se reserva en el portal de viajes, con un máximo de 150 € por noche (200 € en
  Madrid y París).
- Los gastos de más de 500 € necesitan la aprobación previa de tu responsable directo.

## Permiso por nacimiento y cuidado del menor

Cada progenitor disfruta de **16 semanas** de permiso por nacimiento y cuidado del menor. Las seis
primeras semanas son obligatorias e ininterrumpidas tras el parto; las diez restantes se pueden
distribuir durante los primeros 12 meses. Acme complementa la prestación de la Seguridad Social
hasta el 100 % del salario.

## Formación

Cada persona dispone de un presupuesto de formación de **1.200 € al año** para cursos, libros y
conferencias. Además, hay clases de inglés gratuitas en la oficina los lunes y miércoles.

## Código de conducta

Tratamos a compañeros, clientes y socios con respeto. El acoso y la discriminación no se toleran.
Puedes comunicar cualquier incidencia a tu responsable, al Equipo de Personas o, de forma
anónima, a través del canal ético ethics.acme.example.
"""

SALARY_BANDS = """\
---
title: Salary Bands — United States (2024)
lang: en
acl: ["group:hr"]
owner: People Team — Compensation
updated: 2024-03-01
---

# Salary Bands — United States (2024)

**Confidential — HR only.** Do not forward this document or share screenshots of it. Managers
receive the band for a specific role from their HR business partner when they open a requisition
or prepare a promotion case.

Bands are annual base salary in US dollars for employees of Acme Robotics, Inc. They apply from
March 1, 2024 until the next compensation review in March 2025. Austin and Chicago use the same
bands; remote employees in Zone B locations are paid 90% of the figures below.

## Engineering levels

| Level | Title                 | Minimum  | Midpoint | Maximum  | Bonus target |
|-------|-----------------------|----------|----------|----------|--------------|
| L1    | Engineer I            | $95,000  | $107,500 | $120,000 | 5%           |
| L2    | Engineer II           | $115,000 | $130,000 | $145,000 | 8%           |
| L3    | Senior Engineer       | $140,000 | $157,500 | $175,000 | 10%          |
| L4    | Staff Engineer        | $170,000 | $190,000 | $210,000 | 12%          |
| L5    | Senior Staff Engineer | $205,000 | $227,500 | $250,000 | 15%          |
| L6    | Principal Engineer    | $245,000 | $272,500 | $300,000 | 20%          |

## Product management levels

| Level | Title                  | Minimum  | Maximum  | Bonus target |
|-------|------------------------|----------|----------|--------------|
| L2    | Product Manager        | $120,000 | $150,000 | 8%           |
| L3    | Senior Product Manager | $145,000 | $180,000 | 10%          |
| L4    | Group Product Manager  | $175,000 | $215,000 | 12%          |

## Rules

- New hires are offered between the band minimum and the midpoint. Offers above the midpoint
  need approval from the VP of People (Daniel Reyes).
- A promotion comes with a raise of at least 8%, or enough to reach the new band's minimum,
  whichever is higher.
- Employees already above the band maximum receive their merit increase as a one-time bonus
  instead of a base salary increase.
- Bonus targets are a percentage of base salary, paid annually in March.
- Equity grants are covered by a separate document, *Equity Guidelines 2024*.
"""

BANDAS_SALARIALES = """\
---
title: Bandas salariales — España (2024)
lang: es
acl: ["group:hr"]
owner: Equipo de Personas — Compensación
updated: 2024-03-01
---

# Bandas salariales — España (2024)

**Confidencial — solo Recursos Humanos.** No reenvíes este documento ni compartas capturas de
pantalla. Los responsables reciben la banda de un puesto concreto a través de su HR business
partner al abrir una vacante o preparar una promoción.

Las bandas indican el salario bruto anual en euros, repartido en 12 pagas, para la plantilla de
Acme Robotics Iberia S.L. Están vigentes desde el 1 de marzo de 2024 hasta la próxima revisión
salarial de marzo de 2025.

## Niveles de ingeniería

| Nivel | Puesto                   | Mínimo    | Punto medio | Máximo    | Bonus objetivo |
|-------|--------------------------|-----------|-------------|-----------|----------------|
| L1    | Ingeniero/a I            | 38.000 €  | 43.000 €    | 48.000 €  | 5 %            |
| L2    | Ingeniero/a II           | 46.000 €  | 52.000 €    | 58.000 €  | 8 %            |
| L3    | Ingeniero/a sénior       | 56.000 €  | 64.000 €    | 72.000 €  | 10 %           |
| L4    | Ingeniero/a staff        | 70.000 €  | 80.000 €    | 90.000 €  | 12 %           |
| L5    | Ingeniero/a staff sénior | 88.000 €  | 99.000 €    | 110.000 € | 15 %           |
| L6    | Ingeniero/a principal    | 108.000 € | 121.500 €   | 135.000 € | 20 %           |

## Normas

- Las nuevas incorporaciones se contratan entre el mínimo y el punto medio de la banda. Una
  oferta por encima del punto medio necesita la aprobación de la VP de Personas.
- Una promoción conlleva una subida mínima del 8 % o la necesaria para llegar al mínimo de la
  nueva banda, la que sea mayor.
- Quien ya supere el máximo de su banda recibe la subida por mérito como bonus único.
"""

DATABASE_FAILOVER = """\
---
title: "Runbook: PostgreSQL primary failover (orders-db)"
lang: en
acl: ["group:engineering"]
owner: Platform Team
updated: 2024-02-20
---

# Runbook: PostgreSQL primary failover (orders-db)

Use this runbook when the primary of the **orders-db** PostgreSQL 15 cluster is down or so
degraded that checkout and order processing fail. The cluster has three nodes managed by Patroni
with an etcd quorum:

- `db-prod-1.acme.example`: normally the primary (Austin, rack A)
- `db-prod-2.acme.example`: synchronous replica (Austin, rack B), the preferred failover target
- `db-prod-3.acme.example`: asynchronous replica in the Chicago data center

Applications connect through PgBouncer at `orders-db.internal.acme.example:6432`, which always
follows the current Patroni leader. Targets: recovery time objective (RTO) 30 minutes; recovery
point objective (RPO) zero when failing over to the synchronous replica.

## Who is on call

Database alerts page the **Platform Primary** on-call rotation in OpsPager (schedule
`platform-primary`, weekly hand-over on Mondays at 10:00 Central). If the page is not acknowledged
within **15 minutes**, OpsPager escalates automatically to the **Platform Secondary** rotation. If
it is still unacknowledged 15 minutes after that, it escalates to the Engineering Manager on duty
(rotation `eng-managers`). Anyone can trigger a manual escalation with `/page platform-secondary`
in the #incidents channel.

## 1. Confirm the primary is really down

```sh
patronictl -c /etc/patroni/patroni.yml list orders-db
psql "host=db-prod-1.acme.example dbname=orders user=ops_readonly" -c "SELECT 1;"
```

Check the Grafana dashboard *orders-db / Overview*. Do **not** fail over because of a replication
lag alert alone, and do not fail over while a Patroni automatic failover is already in progress
(the `list` output shows a member in state `promoting`).

## 2. Declare an incident

Run `/incident declare sev1 "orders-db primary down"` in #incidents. The on-call engineer is the
Incident Commander until they hand over. Set the public status page to *Degraded performance*.

## 3. Check the replicas

```sh
psql -h db-prod-2.acme.example -U ops_readonly -d orders -c "SELECT now() - pg_last_xact_replay_timestamp() AS replay_lag;"
```

Fail over to `db-prod-2` unless it is unhealthy or its replay lag is above 30 seconds. Failing
over to `db-prod-3` may lose recent transactions and needs explicit approval from the Incident
Commander, recorded in the incident channel.

## 4. Fence the old primary

If `db-prod-1` is still reachable, stop Patroni on it so it cannot come back as a second primary:

```sh
ssh db-prod-1.acme.example sudo systemctl stop patroni
```

If it is not reachable, power it off: `acmectl infra power-off db-prod-1 --reason "orders-db failover"`.

## 5. Promote the replica

```sh
patronictl -c /etc/patroni/patroni.yml failover orders-db --candidate db-prod-2 --force
```

## 6. Verify

```sh
patronictl -c /etc/patroni/patroni.yml list orders-db
psql "host=orders-db.internal.acme.example port=6432 dbname=orders user=ops_readonly" -c "SELECT pg_is_in_recovery();"
```

`pg_is_in_recovery()` must return `f`. Watch the checkout error rate on the *Checkout / Golden
signals* dashboard; it should fall below 1% within 5 minutes. Post an update in #incidents every
15 minutes until the incident is resolved.

## 7. Rebuild the old primary

Once the hardware is healthy, rebuild `db-prod-1` as a replica:

```sh
patronictl -c /etc/patroni/patroni.yml reinit orders-db db-prod-1
```

Do not switch the leader back during business hours; schedule a planned switchover instead.

## 8. Follow-up

Write a blameless postmortem within 5 business days using the template in the engineering wiki,
and review it in the weekly Platform reliability meeting.
"""

TRAVEL_POLICY = """\
ACME ROBOTICS TRAVEL POLICY
Version 2.1, effective February 1, 2024. Owner: Finance (travel@acme.example)

1. BOOKING

All business travel must be booked through the Acme Travel Portal at travel.acme.example.
Bookings made outside the portal are not reimbursed unless the portal could not offer the
itinerary and the travel desk confirmed this in writing. Book at least 14 days before departure
whenever possible; last-minute trips need your manager's approval in the portal.

2. FLIGHTS

- Flights under 6 hours: economy class.
- Flights of 6 hours or more: premium economy.
- Business class only for flights over 10 hours and with VP approval.
- Choose the lowest logical fare within two hours of your preferred departure time.
- Checked baggage fees for one bag are reimbursed; seat upgrades are not.
- For trips under 4 hours door to door, take the train instead of flying when one is available.

3. HOTELS

The nightly hotel limit is $250 plus taxes. In New York, San Francisco, London and Zurich the
limit is $350 plus taxes. Preferred hotels in the portal already respect these limits.

4. MEALS AND INCIDENTALS

Meals are reimbursed up to $60 per day, as in the Employee Handbook expense policy. Keep receipts
for any expense over $25.

5. GROUND TRANSPORTATION

Use public transport, taxis or ride-hailing to and from airports. Rental cars must be compact or
midsize and are booked through the portal. Personal car mileage is reimbursed at $0.67 per mile.

6. SAFETY AND INSURANCE

Travel booked through the portal is automatically covered by the company travel insurance. For
emergencies while traveling, call the 24/7 travel assistance line at +1 512 555 0142. Travel to
countries on the Security team's high-risk list needs approval from security@acme.example.

7. EXPENSE REPORTS

Submit travel expenses in PeopleHub within 30 days of returning.
"""

VPN_SETUP = """\
---
title: Setting up the Acme Connect VPN
lang: en
owner: IT
updated: 2024-01-10
---

# Setting up the Acme Connect VPN

Acme Connect is the company VPN. You need it to reach internal systems (PeopleHub admin pages,
the engineering wiki, Grafana, internal Git) from outside an Acme office. It is based on WireGuard
and uses your company single sign-on account plus MFA.

## Install the client

1. Open the Self Service app on your company laptop (macOS) or the Company Portal (Windows).
2. Install **Acme Connect 4.2** or newer. Linux users install the `acme-connect` package from the
   internal apt repository.
3. Start Acme Connect and click **Sign in**. Your browser opens the SSO page.
4. Approve the sign-in with your hardware security key or authenticator app.

## Connect

- The server is `vpn.acme.example`; the client picks the nearest gateway (Austin, Chicago or
  Barcelona) automatically.
- Use **Full tunnel** mode on public Wi-Fi (airports, hotels, cafés). Split tunnel is the
  default at home.
- Sessions last 12 hours, after which you must sign in again.

## Troubleshooting

- "Device not compliant": your laptop is missing OS updates or disk encryption is off. Install
  pending updates and restart.
- "Handshake did not complete": check that UDP port 51820 is not blocked by the network you are on,
  or switch to TCP fallback in Settings.
- Still stuck? Open a ticket at it.acme.example or call the IT help desk at extension 4357
  (H-E-L-P), Monday to Friday 7:00 to 19:00 Central.
"""

ONBOARDING_CHECKLIST = """\
---
title: New Hire Onboarding Checklist
lang: en
owner: People Team
updated: 2024-01-15
---

# New Hire Onboarding Checklist

This checklist is for new employees and their managers. Your onboarding buddy will go through it
with you during your first week.

## Before day one (manager)

- [ ] Request the laptop from IT at least 10 business days before the start date.
- [ ] Assign an onboarding buddy from the same team.
- [ ] Add the new hire to the team calendar and chat channels.

## Day one

- [ ] Pick up your laptop from the IT desk (Austin: 3rd floor; Chicago: reception; Barcelona:
      planta 2) at 9:00.
- [ ] Set up your password manager and MFA; a hardware security key is handed out with the laptop.
- [ ] Install the Acme Connect VPN.
- [ ] Sign the Information Security Policy acknowledgement in PeopleHub.
- [ ] Lunch with your team (paid by the company).

## First week

- [ ] Complete the mandatory security awareness training (45 minutes) in PeopleHub.
- [ ] Read the Employee Handbook, especially the vacation, remote work and expense policies.
- [ ] Meet your manager to agree on 30/60/90-day goals.
- [ ] Engineers: request access to the `engineering` group and shadow an on-call shift.
- [ ] Sales: request access to the `sales` group and read the Sales Playbook.

## First month

- [ ] Attend the monthly New Hire Welcome session with the CEO.
- [ ] Give feedback on onboarding through the 30-day survey.
"""

SAMPLES_TOML = """\
# Source configuration for `lore ingest ingest/samples.toml`.
[[source]]
name = "samples"
path = "samples"            # relative to this file
default_acl = ["everyone"]
"""


def acl_sidecar(group: str) -> str:
    return (
        "# Access control override for the document next to this file.\n"
        f'acl = ["group:{group}"]\n'
    )


SALES_PLAYBOOK: list[tuple] = [
    ("Title", "Acme Robotics Sales Playbook 2024"),
    ("runs", "Normal", [("Audience: ", True),
                        ("account executives, sales engineers and sales leadership. Owner: Jordan Ellis, "
                         "VP of Sales. Questions go to the deal desk at dealdesk@acme.example.", False)]),
    ("Heading1", "1. What we sell"),
    ("Normal", "We sell the Acme Picker P3 autonomous mobile robot (list price $58,000 per robot) together with "
               "a FleetOS software subscription ($4,800 per robot per year, minimum term three years). "
               "Every deal includes on-site commissioning by our deployment team; a typical site goes live "
               "eight weeks after contract signature."),
    ("Heading1", "2. Ideal customer profile"),
    ("Normal", "Our best customers share these traits. Prioritise accounts that match at least four of them."),
    ("ListBullet", "Warehouses, third-party logistics (3PL) providers and light manufacturers in North America "
                   "or the European Union."),
    ("ListBullet", "Annual revenue between $50 million and $1 billion, with 200 to 2,000 employees."),
    ("ListBullet", "At least 10,000 square meters of warehouse floor and two or more shifts per day."),
    ("ListBullet", "A modern warehouse management system (SAP EWM, Manhattan Active WM or Blue Yonder)."),
    ("ListBullet", "A named operations leader who owns labor cost and picking accuracy targets."),
    ("Heading2", "Disqualifiers"),
    ("Normal", "Sites with fewer than 5 robots of demand, cold storage below minus 20 degrees Celsius, and "
               "customers who want to buy robots without a FleetOS subscription are not a fit."),
    ("Heading1", "3. Discount approval rules"),
    ("Normal", "Discounts are calculated on the total contract value (robots plus the full FleetOS subscription "
               "term) against the 2024 price book. Request every discount in the CRM before it appears in a "
               "quote; the quote tool blocks unapproved discounts."),
    ("table", [
        ["Discount on total contract value", "Who approves", "Turnaround"],
        ["Up to 10%", "Account executive (the sales rep)", "Immediate, no approval needed"],
        ["More than 10% and up to 20%", "Sales Director", "1 business day"],
        ["More than 20%", "VP of Sales, after deal desk review", "2 business days"],
    ], [3400, 3400, 2560]),
    ("Normal", "Non-standard payment terms (net 60 or longer), free pilots and extra warranty years need CFO "
               "approval regardless of the discount level. Discounts never apply to commissioning services."),
    ("Heading1", "4. Objection handling"),
    ("Heading2", "\u201cIt is too expensive.\u201d"),
    ("Normal", "Move the conversation from price to payback. A site with 20 robots typically saves 11 pickers "
               "per shift; the average customer payback period is 14 months. Offer the ROI workshop before "
               "offering any discount."),
    ("Heading2", "\u201cWe are worried about safety.\u201d"),
    ("Normal", "The Picker P3 is certified to ISO 3691-4 and stops within 0.5 meters when a person enters its "
               "path. Share the safety white paper and invite the customer's safety officer to a site visit."),
    ("Heading2", "\u201cIt will not integrate with our WMS.\u201d"),
    ("Normal", "FleetOS ships with certified connectors for SAP EWM, Manhattan Active WM and Blue Yonder. For "
               "other systems, the REST integration API is usually connected within three weeks by our "
               "solutions engineers."),
    ("Heading2", "\u201cWe want to start with a pilot.\u201d"),
    ("Normal", "Offer a paid 60-day pilot with 3 robots. The pilot fee is credited in full if the customer "
               "signs a contract for at least 10 robots within 30 days after the pilot ends."),
    ("Heading1", "5. Contacts"),
    ("Normal", "VP of Sales: Jordan Ellis. Sales Director, North America: Priya Natarajan. Sales Director, "
               "Europe: Lucía Fernández. Deal desk: dealdesk@acme.example."),
]

GUIA_DE_VENTAS: list[tuple] = [
    ("Title", "Guía de ventas para España y Latinoamérica"),
    ("Normal", "Esta guía resume las reglas comerciales para el equipo de ventas de Acme Robotics Iberia. "
               "Responsable: Lucía Fernández, directora de ventas para Europa."),
    ("Heading1", "Cliente ideal"),
    ("Normal", "Buscamos operadores logísticos y fabricantes con almacenes de más de 10.000 metros cuadrados, "
               "entre 200 y 2.000 empleados y al menos dos turnos diarios. En España priorizamos Cataluña, "
               "Madrid, Valencia y Zaragoza."),
    ("Heading1", "Aprobación de descuentos"),
    ("Normal", "Los descuentos se calculan sobre el valor total del contrato y se solicitan en el CRM antes de "
               "enviar cualquier oferta."),
    ("table", [
        ["Descuento", "Quién lo aprueba", "Plazo"],
        ["Hasta el 10 %", "El comercial (account executive)", "Inmediato"],
        ["Más del 10 % y hasta el 20 %", "Director/a de ventas", "1 día laborable"],
        ["Más del 20 %", "VP de ventas, tras revisión del deal desk", "2 días laborables"],
    ], [3400, 3400, 2560]),
    ("Heading1", "Objeciones frecuentes"),
    ("Heading2", "\u00abEs demasiado caro\u00bb"),
    ("Normal", "Habla de retorno de la inversión: el plazo medio de amortización es de 14 meses. Ofrece el "
               "taller de ROI antes de ofrecer un descuento."),
    ("Heading2", "\u00ab¿Es seguro trabajar junto a los robots?\u00bb"),
    ("Normal", "El Picker P3 tiene la certificación ISO 3691-4 y se detiene a menos de 0,5 metros de una "
               "persona. Invita al responsable de prevención de riesgos a visitar una instalación."),
    ("Heading2", "\u00abQueremos empezar con un piloto\u00bb"),
    ("Normal", "Ofrece un piloto de pago de 60 días con 3 robots; su coste se descuenta íntegramente si el "
               "cliente firma al menos 10 robots en los 30 días siguientes."),
]

SECURITY_POLICY_PAGES: list[list[tuple[str, str]]] = [
    [
        ("title", "Acme Robotics Information Security Policy"),
        ("subtitle", "Version 3.2 \u2014 effective January 1, 2024 \u2014 owner: Security Team (security@acme.example)"),
        ("p", "This policy applies to every employee, contractor and intern of Acme Robotics and to every "
              "device or account used for company work. Violations may lead to disciplinary action. "
              "Exceptions must be requested from the Security Team in writing and expire after 6 months."),
        ("h", "1. Passwords and authentication"),
        ("li", "Passwords must be at least 14 characters long. Passphrases of four or more unrelated words "
               "are encouraged."),
        ("li", "Periodic password rotation is not required. Change a password only when you suspect it has "
               "been exposed, or when the Security Team asks you to."),
        ("li", "Never reuse a company password on any other site, and never share a password with anyone, "
               "including IT staff."),
        ("li", "Store all passwords in Acme Vault, the company password manager."),
        ("li", "Multi-factor authentication (MFA) is mandatory for every company system without exception."),
        ("li", "Administrators and engineers with production access must use a FIDO2 hardware security key "
               "as their second factor. SMS codes are not accepted as a second factor."),
        ("li", "Accounts are locked for 15 minutes after 10 consecutive failed sign-in attempts."),
        ("p", "Service accounts and API tokens are managed by the owning team in the secrets manager, "
              "rotated at least every 90 days, and never committed to source control."),
    ],
    [
        ("h", "2. Devices and encryption"),
        ("li", "Company data may only be stored on company-managed devices enrolled in device management."),
        ("li", "Full-disk encryption is mandatory on all laptops: FileVault on macOS, BitLocker on Windows "
               "and LUKS on Linux. IT enables it before the laptop is handed out."),
        ("li", "Screens must lock automatically after 5 minutes of inactivity."),
        ("li", "Operating system security updates must be installed within 14 days of release."),
        ("li", "Personal USB drives must not be used for company data."),
        ("h", "3. Lost or stolen devices"),
        ("p", "Report any lost or stolen laptop, phone or security key to security@acme.example within 24 "
              "hours of noticing the loss, even if you expect to find it again. Outside office hours, also "
              "call the security hotline at +1 512 555 0199. Include the device type, the asset tag if you "
              "know it, and where and when you last had the device."),
        ("p", "The Security Team will lock the device and, if it is not recovered within 72 hours, wipe it "
              "remotely. Reporting late makes it impossible to rule out a data breach, and a breach of "
              "personal data must be notified to the authorities within 72 hours."),
        ("h", "4. Working outside the office"),
        ("p", "Connect through the Acme Connect VPN on any network that is not an Acme office network. Do not "
              "leave devices unattended in cars or public places, and use a privacy screen when working "
              "in trains or planes."),
    ],
    [
        ("h", "5. Data classification"),
        ("p", "All company information belongs to one of four classification levels. When in doubt, choose "
              "the higher level and ask the data owner."),
        ("li", "Public: information approved for anyone outside the company, such as press releases, the "
               "public website and published product data sheets."),
        ("li", "Internal: the default level for company information, such as the employee handbook, the "
               "intranet, org charts and most meeting notes. Internal data may be shared with any employee."),
        ("li", "Confidential: information that would harm Acme or its customers if disclosed, such as customer "
               "contracts, pricing and discount approvals, source code, runbooks and roadmaps. Share only "
               "with the teams that need it."),
        ("li", "Restricted: the most sensitive information, such as salary data and salary bands, employee "
               "personal data, health information, credentials and encryption keys. Access is strictly "
               "need-to-know, the data must be encrypted at rest and in transit, and it must never be "
               "sent by chat or unencrypted email."),
        ("h", "6. Reporting security incidents"),
        ("p", "Report suspected phishing, malware or data leaks immediately to security@acme.example or in the "
              "#security-help channel. Do not try to investigate on your own and do not delete the "
              "suspicious email: forward it as an attachment."),
        ("p", "This policy is reviewed every year by the Chief Information Security Officer, Hannah Cole."),
    ],
]

POLITICA_SEGURIDAD_PAGES: list[list[tuple[str, str]]] = [
    [
        ("title", "Política de seguridad de la información"),
        ("subtitle", "Acme Robotics Iberia S.L. \u2014 versión 3.2 \u2014 en vigor desde el 1 de enero de 2024"),
        ("p", "Esta política se aplica a toda la plantilla, a las personas en prácticas y a los contratistas "
              "de Acme Robotics Iberia, y a cualquier dispositivo o cuenta que se utilice para trabajar."),
        ("h", "1. Contraseñas y autenticación"),
        ("li", "Las contraseñas deben tener un mínimo de 14 caracteres. Se recomiendan frases de contraseña."),
        ("li", "No es obligatorio cambiar la contraseña periódicamente; solo hay que cambiarla si se sospecha "
               "que está comprometida."),
        ("li", "La autenticación multifactor (MFA) es obligatoria en todos los sistemas de la compañía."),
        ("li", "El personal de administración y de ingeniería con acceso a producción debe usar una llave de "
               "seguridad física FIDO2. Los códigos por SMS no están permitidos."),
        ("h", "2. Dispositivos y cifrado"),
        ("li", "El cifrado completo del disco es obligatorio en todos los portátiles."),
        ("li", "La pantalla debe bloquearse automáticamente tras 5 minutos de inactividad."),
        ("li", "La pérdida o el robo de un portátil, un móvil o una llave de seguridad se notifica a "
               "security@acme.example en un plazo máximo de 24 horas."),
    ],
    [
        ("h", "3. Clasificación de la información"),
        ("p", "Toda la información de la compañía pertenece a uno de estos cuatro niveles. En caso de duda, "
              "elige el nivel más alto."),
        ("li", "Pública: información aprobada para publicarse, como notas de prensa o la web corporativa."),
        ("li", "Interna: el nivel por defecto, como el manual del empleado o la intranet. Puede compartirse "
               "con cualquier persona de la compañía."),
        ("li", "Confidencial: contratos con clientes, precios, descuentos, código fuente y runbooks. Solo "
               "para los equipos que la necesitan."),
        ("li", "Restringida: nóminas y bandas salariales, datos personales, información de salud, "
               "credenciales y claves de cifrado. Acceso estrictamente limitado y siempre cifrada."),
        ("h", "4. ¿Cómo se comunica un incidente?"),
        ("p", "Ante un correo sospechoso (phishing), un programa malicioso o una fuga de datos, avisa de "
              "inmediato a security@acme.example o en el canal #ayuda-seguridad. ¡No borres el correo "
              "sospechoso! Reenvíalo como adjunto. El equipo de seguridad de Barcelona responde en español "
              "de lunes a viernes, de 8:00 a 19:00."),
    ],
]


# ---------------------------------------------------------------------------
# Loader test fixtures
# ---------------------------------------------------------------------------

FIXTURE_SAMPLE_MD = """\
---
title: Loader Fixture Markdown
lang: en
acl: ["group:engineering", "group:hr"]
---

# Tangerine submarine

The tangerine submarine surfaces at dawn near the harbor.

## Second section

- First item about the velvet compass.
- Second item about the marble kettle.

```text
Code block marker: quartz-pelican-42
```

Final paragraph with **bold** and _italic_ words and a [link](https://docs.acme.example/fixture).
"""

FIXTURE_SAMPLE_TXT = """\
Loader fixture plain text

The periwinkle lighthouse blinks twice every minute.

Second paragraph: the keeper logs every ship in a leather notebook.
Third line of the same paragraph mentions the saltwater harmonica.
"""

SAMPLE_DOCX: list[tuple] = [
    ("Title", "Loader fixture DOCX"),
    ("Heading1", "Cobalt gondola"),
    # One sentence split across runs, even mid-word: runs must be joined without separators.
    ("runs", "Normal", [("The cobalt gon", False), ("dola crosses the ", True), ("glacier at noon.", False)]),
    ("runs", "Normal", [("Tab\tseparated and line\nbreak inside one paragraph.", False)]),
    ("table", [["Bird", "Habitat"], ["Falcon", "Cliffs"], ["Osprey", "Coasts"]], [3000, 3000]),
    ("Heading2", "Closing"),
    ("Normal", "Final sentence mentions the amber trombone."),
]

QUOTE_OPERATOR_PAGES = [
    b"""BT
/F1 12 Tf
14 TL
72 720 Td
(Quote operator fixture, page one: aardvark.) Tj
(Second line uses the apostrophe operator: bumblebee.) '
(Third line also uses the apostrophe operator: cormorant.) '
3 0.5 (Fourth line uses the double quote operator: dromedary.) "
0 0 (Fifth line resets spacing with the double quote operator: echidna.) "
(Sixth line returns to the apostrophe operator: flamingo.) '
ET
""",
    b"""BT
/F1 12 Tf
16 TL
72 720 Td
(Page two begins with the gazelle.) Tj
(Apostrophe line with the hedgehog.) '
T*
(After an explicit T* operator this line names the iguana.) Tj
1 0 (Double quote line with the jackal and escaped \\(parentheses\\).) "
(Final apostrophe line with the kingfisher.) '
ET
""",
]


def quote_operator_pdf() -> bytes:
    return text_pdf(QUOTE_OPERATOR_PAGES, "Quote operator fixture", "Lore tests",
                    "Text shown with the ' and \" operators", "en-US", compress=False)


def encrypted_pdf() -> bytes:
    """One-page PDF encrypted with the Standard Security Handler (V1, R2, 40-bit RC4).

    User password "secret" (needed to open), owner password "owner-secret".
    """
    id0 = hashlib.md5(b"lore encrypted.pdf fixture").digest()
    p = -4
    o_val, u_val, key = r2_security("secret", "owner-secret", p, id0)

    def enc_str(num: int, text: str) -> bytes:
        return b"<" + rc4(object_key(key, num), text.encode("cp1252")).hex().upper().encode() + b">"

    content = (b"BT\n/F1 12 Tf\n72 720 Td\n"
               b"(Encrypted fixture: the obsidian walrus guards the vault.) Tj\n"
               b"0 -16 Td\n(This text is only readable with the user password.) Tj\nET\n")
    enc_content = rc4(object_key(key, 5), content)
    objs = {
        1: b"<< /Type /Catalog /Pages 2 0 R >>",
        2: b"<< /Type /Pages /Kids [4 0 R] /Count 1 >>",
        3: FONT_REGULAR,
        4: (b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            b"/Resources << /Font << /F1 3 0 R >> >> /Contents 5 0 R >>"),
        5: b"<< /Length %d >>\nstream\n" % len(enc_content) + enc_content + b"\nendstream",
        6: (b"<< /Title " + enc_str(6, "Encrypted fixture") + b" /Producer " + enc_str(6, "Lore generate_samples.py")
            + b" /CreationDate " + enc_str(6, PDF_DATE) + b" >>"),
        7: (b"<< /Filter /Standard /V 1 /R 2 /Length 40 /O <" + o_val.hex().upper().encode()
            + b"> /U <" + u_val.hex().upper().encode() + b"> /P %d >>" % p),
    }
    idhex = id0.hex().upper().encode()
    return pdf_assemble(objs, b"/Root 1 0 R /Info 6 0 R /Encrypt 7 0 R /ID [<" + idhex + b"> <" + idhex + b">]")


def corrupt_pdf() -> bytes:
    """Starts like a PDF, then a truncated object, binary garbage and a cut-off xref."""
    garbage = deterministic_bytes(b"corrupt.pdf", 600).replace(b"obj", b"ob_").replace(b"trailer", b"trailex")
    return (b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n"
            b"1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n"
            b"2 0 obj\n<< /Type /Pages /Kids [3 0 R] /Cou"
            + garbage
            + b"\nxref\n0 4\n0000000000 65535 f \n00000000")


def deterministic_bytes(seed: bytes, n: int) -> bytes:
    out = bytearray()
    counter = 0
    while len(out) < n:
        out += hashlib.sha256(seed + counter.to_bytes(4, "big")).digest()
        counter += 1
    return bytes(out[:n])


def binary_md() -> bytes:
    data = bytearray(deterministic_bytes(b"binary.md", 2048))
    data[0:8] = b"\x00\x01\x02\x03\xff\xfe\x00\x00"   # NULs and bytes that are never valid UTF-8
    for i in range(64, len(data), 64):                # plenty of NULs throughout
        data[i] = 0
    return bytes(data)


# ---------------------------------------------------------------------------
# Assembly
# ---------------------------------------------------------------------------

def build() -> dict[Path, bytes]:
    files: dict[Path, bytes] = {}

    def text(path: Path, content: str) -> None:
        files[path] = content.encode("utf-8")

    s = SAMPLES
    text(HERE / "samples.toml", SAMPLES_TOML)
    text(s / "handbook" / "employee-handbook.md", EMPLOYEE_HANDBOOK)
    text(s / "handbook" / "manual-del-empleado.md", MANUAL_DEL_EMPLEADO)
    text(s / "hr" / "salary-bands.md", SALARY_BANDS)
    text(s / "hr" / "bandas-salariales.md", BANDAS_SALARIALES)
    text(s / "engineering" / "runbooks" / "database-failover.md", DATABASE_FAILOVER)
    text(s / "engineering" / "runbooks" / "deploy-rollback.html.meta.toml", acl_sidecar("engineering"))
    files[s / "sales" / "sales-playbook.docx"] = docx(
        SALES_PLAYBOOK, "Acme Robotics Sales Playbook 2024", "Jordan Ellis", "en-US",
        "Discount approval rules, ideal customer profile and objection handling.")
    text(s / "sales" / "sales-playbook.docx.meta.toml", acl_sidecar("sales"))
    files[s / "sales" / "guia-de-ventas.docx"] = docx(
        GUIA_DE_VENTAS, "Guía de ventas para España y Latinoamérica", "Lucía Fernández", "es-ES",
        "Cliente ideal, aprobación de descuentos y objeciones frecuentes.")
    text(s / "sales" / "guia-de-ventas.docx.meta.toml", acl_sidecar("sales"))

    sec = SECURITY_POLICY_PAGES
    files[s / "policies" / "security-policy.pdf"] = text_pdf(
        [layout_page(blocks, f"Acme Robotics \u2014 Information Security Policy v3.2 \u2014 Internal \u2014 "
                             f"Page {i + 1} of {len(sec)}") for i, blocks in enumerate(sec)],
        "Acme Robotics Information Security Policy", "Acme Robotics Security Team",
        "Passwords, devices, lost device reporting and data classification", "en-US")
    pol = POLITICA_SEGURIDAD_PAGES
    files[s / "policies" / "politica-de-seguridad.pdf"] = text_pdf(
        [layout_page(blocks, f"Acme Robotics Iberia \u2014 Política de seguridad v3.2 \u2014 Interna \u2014 "
                             f"Página {i + 1} de {len(pol)}") for i, blocks in enumerate(pol)],
        "Política de seguridad de la información", "Equipo de Seguridad de Acme Robotics",
        "Contraseñas, dispositivos y clasificación de la información", "es-ES")
    text(s / "policies" / "travel-policy.txt", TRAVEL_POLICY)
    text(s / "it" / "vpn-setup.md", VPN_SETUP)
    text(s / "it" / "onboarding-checklist.md", ONBOARDING_CHECKLIST)

    f = FIXTURES
    files[f / "corrupt.pdf"] = corrupt_pdf()
    files[f / "encrypted.pdf"] = encrypted_pdf()
    files[f / "empty.md"] = b""
    files[f / "binary.md"] = binary_md()
    files[f / "quote-operator.pdf"] = quote_operator_pdf()
    text(f / "sample.md", FIXTURE_SAMPLE_MD)
    text(f / "sample.txt", FIXTURE_SAMPLE_TXT)
    files[f / "sample.docx"] = docx(SAMPLE_DOCX, "Loader Fixture DOCX", "Lore tests", "en-US",
                                    "DOCX loader fixture with split runs, a table, a tab and a line break.")
    return files


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true",
                    help="do not write; exit 1 if any generated file is missing or differs")
    args = ap.parse_args()

    files = build()
    stale = []
    for path in sorted(files):
        data = files[path]
        rel = path.relative_to(REPO)
        current = path.read_bytes() if path.exists() else None
        if current == data:
            continue
        if args.check:
            stale.append(str(rel))
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        print(f"wrote {rel} ({len(data)} bytes)")
    if args.check:
        if stale:
            print("out of date (run ingest/generate_samples.py):", *stale, sep="\n  ")
            return 1
        print(f"all {len(files)} generated files are up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
