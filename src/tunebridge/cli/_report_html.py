"""``report.html``: one self-contained page (plotly.js inline, no CDN), the run record and a sortable trials table.

The page checks itself: once loaded, ``<body>`` carries ``data-plots`` (figures), ``data-drawn`` (figures
plotly drew) and ``data-js-errors`` (a JSON list of uncaught errors), which the browser test reads.
"""

from __future__ import annotations

import html
import json
import math
from typing import Any

from tunebridge.cli._report_data import IMPORTANCE_METHOD, ReportData

__all__ = ["render"]

TITLES = {
    "history": "Optimization history",
    "curves": "Learning curves",
    "pruning": "What pruning saved",
    "pareto": "Pareto front",
    "parallel": "Parallel coordinates",
    "slice": "Slice plots (most important parameters)",
    "contour": "Contour plots (most important parameters)",
    "importances": "Parameter importances",
}
NOTES = {  # our own HTML (entities), not escaped
    "history": "Pruned trials at their last reported value (&times;), failed trials along the bottom (&#9650;), the best "
    "complete value so far as a line.",
    "curves": "The value reported at each epoch. Pruned trials are dashed and end in &times;, the best trial is thick. "
    "Drag to zoom, double-click to come back; click a legend entry to hide a group.",
    "parallel": "Complete trials; the colour is the objective.",
}

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;max-width:1200px;padding:0 20px;
color:#222}
h1{margin:18px 0 4px}h2{margin:28px 0 6px;border-bottom:1px solid #ddd;padding-bottom:3px}
nav a{margin-right:12px}code,pre{background:#f5f5f5;border-radius:3px;padding:1px 4px}pre{padding:8px;overflow:auto}
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ddd;padding:3px 7px;text-align:left}
table.record th{background:#fafafa;white-space:nowrap}.note{color:#555;margin:4px 0 8px}
.caveat{background:#fff4e5;border-left:4px solid #ff7f0e;padding:8px 12px;margin:8px 0}
table.sortable th{cursor:pointer;background:#f0f0f0;position:sticky;top:0;user-select:none}
table.sortable th[data-dir=asc]::after{content:" \\25B2"}table.sortable th[data-dir=desc]::after{content:" \\25BC"}
td.num{text-align:right;font-variant-numeric:tabular-nums}tr.PRUNED td{color:#a35400}tr.FAIL td{color:#b00}
.tablewrap{max-height:600px;overflow:auto}
"""

# Collects uncaught errors from the first line on; after load, writes the self-check onto <body>.
HEAD_JS = """
window.tbErrors=[];
window.addEventListener('error',function(e){window.tbErrors.push(String(e.message||e));});
window.addEventListener('unhandledrejection',function(e){window.tbErrors.push('unhandled: '+String(e.reason));});
window.addEventListener('load',function(){setTimeout(function(){
  var b=document.body,plots=document.querySelectorAll('.tb-plot');b.dataset.plots=plots.length;
  b.dataset.drawn=Array.prototype.filter.call(plots,function(p){return p.querySelector('.main-svg');}).length;
  b.dataset.jsErrors=JSON.stringify(window.tbErrors);},0);});
"""

# Click a header to sort by it (numbers as numbers, empty cells last); click again to reverse.
SORT_JS = """
document.querySelectorAll('table.sortable th').forEach(function(th,i){th.addEventListener('click',function(){
  var table=th.closest('table'),body=table.tBodies[0],asc=th.dataset.dir!=='asc';
  table.querySelectorAll('th').forEach(function(h){delete h.dataset.dir;});th.dataset.dir=asc?'asc':'desc';
  function key(r){var c=r.cells[i],v=c.dataset.v!==undefined?c.dataset.v:c.textContent;
    if(v==='')return null;var n=Number(v);return isNaN(n)?v:n;}
  Array.prototype.slice.call(body.rows).sort(function(a,b){var x=key(a),y=key(b);
    if(x===null)return y===null?0:1;if(y===null)return -1;
    var c=(typeof x==='number'&&typeof y==='number')?x-y:String(x).localeCompare(String(y));return asc?c:-c;})
  .forEach(function(r){body.appendChild(r);});});});
"""


def render(data: ReportData, figures: dict[str, Any], pngs: dict[str, str]) -> str:
    """The whole page; ``pngs``: name -> file name of the PNG versions next to it."""
    from plotly.offline import get_plotlyjs

    e = html.escape
    parts = [
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>tunebridge report: {e(data.name)}</title>",
        f"<style>{CSS}</style><script>{HEAD_JS}</script>",
        f"<script type='text/javascript'>{get_plotlyjs()}</script></head><body>",
        f"<h1>Study <code>{e(data.name)}</code></h1>",
        "<nav>" + " ".join(f"<a href='#{k}'>{e(TITLES[k].split(' (')[0])}</a>" for k in figures),
        "<a href='#best'>Best</a> <a href='#trials'>Trials</a></nav>",
        "<h2 id='record'>Run record</h2><table class='record'>",
        *(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in data.record.items() if v),
        "</table>",
        _best(data),
    ]
    for key, fig in figures.items():
        parts.append(f"<h2 id='{key}'>{e(TITLES[key])}</h2>")
        if key in NOTES:
            parts.append(f"<p class='note'>{NOTES[key]}</p>")
        if key == "importances":
            parts.append(_importance_text(data))
        if key == "pruning":
            parts.append(f"<p id='tb-savings'>{e(data.savings.text())}</p>")
        div = fig.to_html(
            full_html=False,
            include_plotlyjs=False,
            div_id=f"plot-{key}",
            config={"displaylogo": False, "responsive": True},
        )
        parts.append(f"<div class='tb-plot'>{div}</div>")
    if not data.importances:
        parts.append(f"<h2 id='importances'>{e(TITLES['importances'])}</h2>{_importance_text(data)}")
    if pngs:
        links = ", ".join(f"<a href='{e(f)}'>{e(f)}</a>" for f in pngs.values())
        parts.append(f"<p class='note'>PNG versions (next to this file): {links}</p>")
    parts += [_trials_table(data), f"<script>{SORT_JS}</script></body></html>"]
    return "\n".join(parts)


def _importance_text(data: ReportData) -> str:
    e = html.escape
    out = []
    if data.importances:
        out.append(f"<p class='note'>Method: {e(IMPORTANCE_METHOD)}, on {len(data.complete)} complete trials.</p>")
    if data.importance_caveat:
        out.append(f"<div class='caveat'><b>Caveat:</b> {e(data.importance_caveat)}</div>")
    if data.importance_note:
        out.append(f"<p class='note'>{e(data.importance_note)}</p>")
    return "".join(out)


def _best(data: ReportData) -> str:
    e = html.escape
    if data.best is None:
        return "<h2 id='best'>Best trial</h2><p>No complete trial yet.</p>"
    values = ", ".join(f"{m} = {v:.6g}" for m, v in zip(data.metrics, data.best.values))
    title = "Best trial" if not data.multi else "A Pareto-optimal trial (the front is plotted below)"
    ckpt = data.best_checkpoint
    where = "not kept (keep_checkpoints: 0, or it was superseded)"
    if ckpt:
        import os

        where = f"<code>{e(ckpt)}</code>" + ("" if os.path.exists(ckpt) else " (not on this machine)")
    rows = [
        f"<h2 id='best'>{title}: trial {data.best.number}</h2>",
        f"<p>{e(values)} — checkpoint: {where}</p>",
        f"<pre>{e(json.dumps(data.best_config, indent=2, default=str))}</pre>",
    ]
    return "".join(rows)


def _trials_table(data: ReportData) -> str:
    import pandas as pd

    e = html.escape
    df = data.table
    if df.empty:
        return "<h2 id='trials'>Trials</h2><p>No trials yet.</p>"
    cols = [c for c in df.columns if c not in ("fail_reason",) or df[c].notna().any()]
    head = "".join(f"<th title='click to sort'>{e(str(c).removeprefix('param.'))}</th>" for c in cols)
    rows = []
    for record in df.to_dict("records"):
        cells = []
        for c in cols:
            v = record[c]
            if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
                cells.append("<td></td>")
            elif isinstance(v, bool) or not isinstance(v, (int, float)):
                cells.append(f"<td>{e(str(v))}</td>")
            elif isinstance(v, int) or (float(v).is_integer() and c in ("number", "epochs")):
                cells.append(f"<td class='num'>{int(v)}</td>")
            else:
                cells.append(f"<td class='num' data-v='{v!r}'>{v:.5g}</td>")
        rows.append(f"<tr class='{e(str(record.get('state', '')))}'>{''.join(cells)}</tr>")
    return (
        f"<h2 id='trials'>Trials ({len(df)})</h2><p class='note'>Click a column header to sort.</p>"
        f"<div class='tablewrap'><table class='sortable'><thead><tr>{head}</tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )
