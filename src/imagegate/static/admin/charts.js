// Usage charts: one line per model, from the JSON the page embeds (no requests of its own).
(() => {
  const COLORS = ["#2f5bea", "#e8590c", "#2b8a3e", "#ae3ec9", "#c92a2a", "#0b7285", "#5f3dc4", "#a61e4d"];
  const data = JSON.parse(document.getElementById("usage-data").textContent);
  const models = Object.keys(data.models);

  function draw(id, measure, format) {
    const box = document.getElementById(id);
    if (!data.days.length || !models.length) {
      box.innerHTML = '<p class="empty">No tasks in this range.</p>';
      box.dataset.rendered = "empty";
      return;
    }
    const series = [{}].concat(models.map((m, i) => ({
      label: m, stroke: COLORS[i % COLORS.length], width: 2,
      points: { show: data.days.length <= 62, size: 5 }, value: (u, v) => v == null ? "" : format(v),
    })));
    const options = {
      width: Math.max(280, box.clientWidth), height: 240, series,
      scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(1, max * 1.1)] } },
      axes: [{}, { values: (u, ticks) => ticks.map(format), size: 60 }],
      legend: { live: false },
    };
    const plot = new uPlot(options, [data.days, ...models.map((m) => data.models[m][measure])], box);
    box.dataset.rendered = "chart";
    new ResizeObserver(() => plot.setSize({ width: Math.max(280, box.clientWidth), height: 240 }))
      .observe(box);
  }

  const whole = (v) => Number.isInteger(v) ? String(v) : v.toFixed(1);
  const credits = (v) => v >= 100 ? v.toFixed(0) : v.toFixed(2);
  draw("chart-images", "images", whole);
  draw("chart-credits", "credits", credits);
})();
