"""All of driftwatch's HTML: one stylesheet, one escape function, one page shell, one chart module.

- `style`: the palette, each page's CSS rules and the inline styles of emails;
- `markup`: `escape`, `finite`, `report_url` and `document`, the page shell;
- `charts`: SVG trend charts for pages, a PNG bar chart for emails;
- `validation`, `evaluation`, `monitoring`, `emails`: one module per report.

Nothing is imported here, so that a caller pays only for the modules it uses. Every value that
comes from data (column names, category values, reasons) is escaped: batches are untrusted.
"""
