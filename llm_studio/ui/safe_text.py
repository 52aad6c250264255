"""Show user text, names, file names and rule text exactly as they are.

Wave renders `ui.text`, message bars, notification bars, chatbot messages and markdown table
cells with markdown-it in typographer mode: `..` becomes `…`, `--` a dash, quotes turn curly,
`(c)` becomes ©, a backslash before punctuation disappears and `__name__` turns bold. Backslash
escapes do not help (Wave's markdown-it typographs escaped dots too). The inside of an HTML block
is left alone by markdown, so text goes out HTML-escaped inside one `<div>` line, newlines as
`<br>` (a blank line would end the block).
"""

from __future__ import annotations

import html
import time

from h2o_wave import Q, ui


def escape(text: object) -> str:
    """`text` as HTML that shows it literally; for building a `block` with tags around it."""
    return html.escape(str(text), quote=False).replace("\r\n", "\n").replace("\n", "<br>")


def block(inner_html: str) -> str:
    """Markdown source that shows `inner_html` (built with `escape`) untouched by markdown."""
    return f"<div>{inner_html}</div>"


def plain(text: object) -> str:
    """Markdown source that shows `text` exactly."""
    return block(escape(text))


def labelled(label: str, value: object) -> str:
    """`label:` in bold, then `value`, both shown exactly."""
    return block(f"<strong>{escape(label)}:</strong> {escape(value)}")


def strong(text: object) -> str:
    """`text` in bold, shown exactly."""
    return block(f"<strong>{escape(text)}</strong>")


def link(text: object, hash_: str) -> str:
    """A link to the app's page `#hash_` showing `text` exactly (for markdown table cells)."""
    return block(f'<a href="#{html.escape(hash_)}">{escape(text)}</a>')


def table(header: list[str], rows: list[list[object]]) -> str:
    """Markdown source of a table whose header and cells are shown exactly."""
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def scroll_into_view(q: Q, name: str) -> None:
    """Scroll the component named `name` to the middle of the window once it is rendered.

    The script runs with the page update that adds the component, maybe before React drew it:
    it looks again for up to a second. The timestamp makes each script new, so it runs again.
    """
    q.page["meta"].script = ui.inline_script(
        f"""(function(n){{const t=Date.now();(function f(){{
const e=document.querySelector('[data-test="'+n+'"]');
if(e){{e.scrollIntoView({{block:'center'}});}}else if(Date.now()-t<1000){{setTimeout(f,50);}}
}})();}})({name!r}); // {time.time()}"""
    )
