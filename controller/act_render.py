"""The act of technical impossibility (rule 18) as printable documents, in Kazakh and Russian.

`render_html(view, lang)` (Jinja2, autoescape on; the template controller/templates/act.html travels
as package data) and `render_pdf(view, lang)` (reportlab) give the act; `lang` ("kk" or "ru") says
which of the two languages comes first - both are always there. Pure and blocking: call from a
thread, with no database transaction open. The same act gives the same bytes.

PDF library: reportlab - well kept, pure Python with a small C accelerator, no browser or system
libraries needed, embeds TrueType fonts; with the DejaVu fonts (Debian fonts-dejavu-core, not
shipped with the package) it renders Cyrillic and the Kazakh letters ә ғ қ ң ө ұ ү һ і. Its
`invariant` mode makes the same act give the same bytes.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape as xml_escape

from controller import act_modes
from controller.errors import Invalid
from controller.selfcheck import evidence as selfcheck_evidence
from controller.store.acts import SIGNER_ROLES

LANGS = ("kk", "ru")
FONT_DIRS = (Path("/usr/share/fonts/truetype/dejavu"), Path("/usr/local/share/fonts/dejavu"))

T: dict[str, dict[str, str]] = {
    "kk": {
        "title": "Бейнеконференцбайланыс құралдарын қолданудың техникалық мүмкіндігінің болмағаны туралы АКТ",
        "draft": "ЖОБА", "final": "Түпкілікті", "court": "Сот", "room": "Сот отырысының залы",
        "case": "Іс нөмірі", "start": "Сот отырысының күні мен уақыты", "participants": "ВКС арқылы қатысушы",
        "drafted": "Акт жасалған уақыты", "reason": "Себебі", "timeline": "Оқиғалар хронологиясы",
        "evidence": "Өлшенген көрсеткіштер", "escalations": "Хабарламалар (16, 17-тармақтар)",
        "breaks": "Техникалық үзілістер (22-тармақ)", "signatures": "Қолдар", "note": "Ескертпе",
        "when": "Уақыты", "event": "Оқиға", "check": "Тексеру", "pair": "Терминалдар", "loss": "Жоғалту",
        "jitter": "Джиттер", "rtt": "RTT", "mos": "MOS", "verdict": "Қорытынды", "reasons": "Себептер",
        "none": "жоқ", "signature": "қолы", "date": "күні", "signed": "қол қойды",
        "sha": "Мазмұнның SHA-256 хэші", "status": "Мәртебесі", "cause": "Себеп", "opened": "Ашылды",
        "step2": "2-саты", "acked": "Қабылдады", "cannot_fix": "Жою мүмкін емес", "resolved": "Жойылды",
        "out": "шығыс", "in": "кіріс", "duration": "Ұзақтығы", "outcome": "Нәтижесі",
        "statement": "Осы акт Бейнеконференцбайланыс құралдарын техникалық қолдану қағидаларының 18-тармағына "
                     "сәйкес жасалды: техникалық ақауларды жою мүмкін болмады, сот отырысын "
                     "бейнеконференцбайланыс арқылы уақытында өткізу мүмкін емес.",
        "check_test": "Тестілеу сеансы (13-т.)", "check_preconnect": "Алдын ала қосылу (15-т.)",
        "head_of_office": "Кеңсе меңгерушісі", "secretary": "Сот отырысының хатшысы",
        "technician": "Техникалық маман", "entered_by": "есептік жазбасы жоқ, енгізген",
        "trigger_not_fixed": "Ақаулар белгіленген уақыт ішінде жойылмады; сот отырысының басталуы кешіктірілді.",
        "trigger_cannot_fix": "Техникалық маман ақауларды жою мүмкін емес екенін хабарлады.",
        "trigger_requested": "Акт сот отырысы хатшысының талабы бойынша жасалды.",
        "good": "жақсы", "degraded": "нашарлаған", "unusable": "жарамсыз",
    },
    "ru": {
        "title": "АКТ об отсутствии технической возможности использования средств видеоконференцсвязи",
        "draft": "ПРОЕКТ", "final": "Окончательный", "court": "Суд", "room": "Зал судебного заседания",
        "case": "Номер дела", "start": "Дата и время судебного заседания", "participants": "Участник по ВКС",
        "drafted": "Акт составлен", "reason": "Причина", "timeline": "Хронология событий",
        "evidence": "Измеренные показатели", "escalations": "Оповещения (пп. 16, 17)",
        "breaks": "Технические перерывы (п. 22)", "signatures": "Подписи", "note": "Примечание",
        "when": "Время", "event": "Событие", "check": "Проверка", "pair": "Терминалы", "loss": "Потери",
        "jitter": "Джиттер", "rtt": "RTT", "mos": "MOS", "verdict": "Заключение", "reasons": "Причины",
        "none": "нет", "signature": "подпись", "date": "дата", "signed": "подписал(а)",
        "sha": "Хэш содержимого SHA-256", "status": "Статус", "cause": "Причина", "opened": "Открыто",
        "step2": "Шаг 2", "acked": "Принял(а)", "cannot_fix": "Устранить невозможно", "resolved": "Устранено",
        "out": "исх.", "in": "вх.", "duration": "Длительность", "outcome": "Итог",
        "statement": "Настоящий акт составлен в соответствии с пунктом 18 Правил технического использования "
                     "средств видеоконференцсвязи: технические неисправности устранить не удалось, провести "
                     "судебное заседание посредством видеоконференцсвязи в назначенное время невозможно.",
        "check_test": "Тестовый сеанс (п. 13)", "check_preconnect": "Предварительное подключение (п. 15)",
        "head_of_office": "Заведующий канцелярией", "secretary": "Секретарь судебного заседания",
        "technician": "Технический специалист", "entered_by": "без учётной записи, внесено пользователем",
        "trigger_not_fixed": "Неисправности не устранены в установленное время; начало судебного заседания "
                             "задерживается.",
        "trigger_cannot_fix": "Технический специалист сообщил, что устранить неисправности невозможно.",
        "trigger_requested": "Акт составлен по требованию секретаря судебного заседания.",
        "good": "хорошее", "degraded": "ухудшенное", "unusable": "непригодное",
    },
}


for _lg in LANGS:       # issue 14: the self-checks' section (controller.selfcheck.evidence)
    T[_lg].update(selfcheck_evidence.T[_lg])


def reasons_in(item: dict, lang: str, fallback: list[str] | None = None) -> list[str]:
    """A check's, a break's or an event's reasons in `lang` (rendered from their codes when the act
    was drafted: `reason_text`); an older act's content has none and keeps `fallback`."""
    return list((item.get("reason_text") or {}).get(lang) or fallback or [])


def _order(lang: str) -> list[str]:
    if lang not in LANGS:
        raise Invalid("lang: expected kk or ru", field="lang")
    return [lang] + [x for x in LANGS if x != lang]


def _signed_as(sig: dict | None, t: dict[str, str]) -> str:
    """The signer's name; for one with no account, also who entered it."""
    if sig is None:
        return ""
    return f"{sig['name']}\n({t['entered_by']} {sig['entered_by']})" if sig.get("entered_by") else sig["name"]


def _jinja():
    import jinja2
    return jinja2.Environment(loader=jinja2.PackageLoader("controller", "templates"),
                              autoescape=jinja2.select_autoescape(["html"], default=True),
                              undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def render_html(view: dict, lang: str) -> str:
    """The act as a printable HTML page, both languages, `lang` first."""
    order = _order(lang)
    tpl = _jinja().get_template("act.html")
    return tpl.render(act=view, c=view["content"], langs=order, T=T, idx={"kk": 0, "ru": 1}, reasons_in=reasons_in,
                      modes_table=act_modes.table_rows,
                      sha=view["final_sha256"] or view["content_sha256"])


def _fonts() -> tuple[str, str]:
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont
    if "DejaVuSans" in pdfmetrics.getRegisteredFontNames():
        return "DejaVuSans", "DejaVuSans-Bold"
    for d in FONT_DIRS:
        regular, bold = d / "DejaVuSans.ttf", d / "DejaVuSans-Bold.ttf"
        if regular.exists() and bold.exists():
            pdfmetrics.registerFont(TTFont("DejaVuSans", str(regular)))
            pdfmetrics.registerFont(TTFont("DejaVuSans-Bold", str(bold)))
            return "DejaVuSans", "DejaVuSans-Bold"
    raise RuntimeError("the DejaVu fonts are missing (Debian package fonts-dejavu-core): "
                       f"looked in {', '.join(str(d) for d in FONT_DIRS)}")


def render_pdf(view: dict, lang: str) -> bytes:
    """The act as PDF (A4), both languages, `lang` first; the same act gives the same bytes."""
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.lib.units import mm
    from reportlab.platypus import PageBreak, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

    regular, bold = _fonts()
    order = _order(lang)
    c = view["content"]
    h = c["hearing"]
    sha = view["final_sha256"] or view["content_sha256"]
    st = {
        "title": ParagraphStyle("title", fontName=bold, fontSize=12.5, leading=16, alignment=1, spaceAfter=6),
        "h": ParagraphStyle("h", fontName=bold, fontSize=10.5, leading=14, spaceBefore=8, spaceAfter=3),
        "p": ParagraphStyle("p", fontName=regular, fontSize=9.5, leading=12.5),
        "cell": ParagraphStyle("cell", fontName=regular, fontSize=7.5, leading=9),
        "small": ParagraphStyle("small", fontName=regular, fontSize=7, leading=9, textColor=colors.grey),
        "mark": ParagraphStyle("mark", fontName=bold, fontSize=10, leading=13, alignment=2,
                               textColor=colors.red if view["status"] == "draft" else colors.black),
    }

    def P(text: Any, style: str = "p") -> Paragraph:
        return Paragraph(xml_escape("" if text is None else str(text)).replace("\n", "<br/>"), st[style])

    def table(rows: list[list[Any]], widths: list[float]) -> Table:
        t = Table([[P(x, "cell") for x in r] for r in rows], colWidths=[w * mm for w in widths], repeatRows=1)
        t.setStyle(TableStyle([("GRID", (0, 0), (-1, -1), 0.4, colors.grey),
                               ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#eeeeee")),
                               ("VALIGN", (0, 0), (-1, -1), "TOP")]))
        return t

    story: list[Any] = []
    for n, lg in enumerate(order):
        t, i = T[lg], LANGS.index(lg)
        if n:
            story.append(PageBreak())
        story.append(P(t["draft"] if view["status"] == "draft" else t["final"], "mark"))
        story.append(P(t["title"], "title"))
        for label, value in ((t["court"], h["court"]), (t["room"], h["room"]), (t["case"], h["case_number"]),
                             (t["start"],
                              f"{h['date_local']} {h['time_local']} ({h['timezone']}, UTC{h['utc_offset']})"),
                             (t["participants"], ", ".join(f"{p['institution']} ({p['terminal_id']})"
                                                           for p in h["participants"])),
                             (t["drafted"], c["drafted_local"])):
            story.append(Paragraph(f"<font name='{bold}'>{xml_escape(label)}:</font> {xml_escape(str(value))}",
                                   st["p"]))
        story.append(P(t["reason"], "h"))
        story.append(P(t[f"trigger_{c['trigger']}"]))
        story.append(Spacer(1, 2 * mm))
        story.append(P(t["statement"]))
        if c.get("note"):
            story.append(P(f"{t['note']}: {c['note']}"))
        story.append(P(t["evidence"], "h"))
        if c["checks"]:
            rows = [[t["check"], t["pair"], t["loss"], t["jitter"], t["rtt"], t["mos"], t["verdict"], t["reasons"]]]
            for ch in c["checks"]:
                rows.append([f"{t['check_' + ch['kind']]}\n{ch['finished_local'] or ''}",
                             f"{ch['caller']} → {ch['callee']}",
                             f"{t['out']} {ch['loss_out'] or '—'}\n{t['in']} {ch['loss_in'] or '—'}",
                             f"{t['out']} {ch['jitter_out'] or '—'}\n{t['in']} {ch['jitter_in'] or '—'}",
                             f"{ch['rtt_mean'] or '—'} (p95 {ch['rtt_p95'] or '—'})", ch["mos"] or "—",
                             f"{t.get(ch['verdict'] or '', ch['verdict'] or '—')} ({ch['status']})",
                             "; ".join(reasons_in(ch, lg, ch["reasons"])
                                       + ([ch["error"]] if ch["error"] else [])) or "—"])
            story.append(table(rows, [26, 28, 23, 23, 20, 10, 22, 28]))
        else:
            story.append(P(t["none"]))
        if c["breaks"]:
            story.append(P(t["breaks"], "h"))
            rows = [[t["when"], t["cause"], t["duration"], t["outcome"], t["evidence"]]]
            for b in c["breaks"]:
                rows.append([f"{b['started_local']} – {b['ended_local'] or ''}", b["cause"],
                             "—" if b["duration_s"] is None else f"{b['duration_s']:.0f} s", b["outcome"] or "—",
                             "; ".join(([b["figures"]] if b["figures"] else []) + reasons_in(b, lg)) or "—"])
            story.append(table(rows, [40, 22, 18, 22, 78]))
        if c.get("modes"):          # rules 21, 23 (acts drafted before 0010 have none)
            title, rows = act_modes.table_rows(c["modes"], lg)
            story.append(P(title, "h"))
            story.append(table(rows, [70, 60, 50]))
        if c.get("self_checks"):
            story.append(P(t["self_checks"], "h"))
            rows = [[t["person"], t["when"], t["devices"], t["figures"], t["verdict"], t["reasons"]]]
            for sc in c["self_checks"]:
                rows.append([f"{sc['name']}\n{sc['mode_text'][i]}",
                             f"{sc['finished_local'] or '—'}\n{sc['status_text'][i]}",
                             sc["devices"][i], sc["figures"][i], t.get(sc["verdict"] or "", "—"),
                             "; ".join(reasons_in(sc, lg)) or "—"])
            story.append(table(rows, [30, 26, 28, 40, 18, 38]))
        if c["escalations"]:
            story.append(P(t["escalations"], "h"))
            rows = [[t["cause"], t["opened"], t["step2"], t["acked"], t["cannot_fix"], t["resolved"]]]
            for e in c["escalations"]:
                rows.append([e["cause_text"][i], e["opened_local"], e["step2_local"] or "—",
                             f"{e['acked_by'] or '—'} {e['acked_local'] or ''}",
                             f"{e['cannot_fix_by'] or '—'} {e['cannot_fix_local'] or ''}",
                             f"{e['resolved_by'] or '—'} {e['resolved_local'] or ''}"])
            story.append(table(rows, [30, 28, 28, 32, 32, 30]))
        story.append(P(t["timeline"], "h"))
        rows = [[t["when"], t["event"], ""]]
        for ev in c["timeline"]:
            rows.append([ev["at_local"], ev["text"][i],
                         "; ".join(([ev["detail"]] if ev["detail"] else []) + reasons_in(ev, lg))])
        story.append(table(rows, [30, 55, 95]))
        story.append(P(t["signatures"], "h"))
        signed = {s["role"]: s for s in view["signatures"]}
        rows = [["", t["signed"], t["signature"], t["date"]]]
        for role in SIGNER_ROLES:
            s = signed.get(role)
            rows.append([t[role], _signed_as(s, t), "", s["signed_local"] if s else ""])
        sig = table(rows, [50, 55, 40, 35])
        sig.setStyle(TableStyle([("TOPPADDING", (0, 1), (-1, -1), 9), ("BOTTOMPADDING", (0, 1), (-1, -1), 9)]))
        story.append(sig)
        story.append(Spacer(1, 4 * mm))
        story.append(P(f"{t['sha']}: {sha}", "small"))

    buf = io.BytesIO()
    doc = SimpleDocTemplate(buf, pagesize=A4, leftMargin=15 * mm, rightMargin=15 * mm, topMargin=15 * mm,
                            bottomMargin=15 * mm, invariant=1, title=T[order[0]]["title"],
                            author="vks-controller", subject=f"{h['case_number']}", creator="vks-controller")
    doc.build(story)
    return buf.getvalue()
