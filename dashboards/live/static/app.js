// Live dashboard: polls the backend's read-only API every second, fetching only what is new, and
// draws it with lightweight-charts (v5 API: chart.addSeries(Definition, options, paneIndex)).
// window.dashboardState mirrors what the page shows, for people debugging and for the browser tests.
'use strict';

(() => {
  const POLL_MS = 1000;
  const SYMBOLS_EVERY_MS = 5000;
  const INITIAL_BARS = 1000;
  const FEED_SIZE = 50;
  const VISIBLE_BARS = 240;
  const UP = '#26a69a';
  const DOWN = '#ef5350';
  const FLAT = '#9598a1';

  const LC = window.LightweightCharts;
  const $ = (id) => document.getElementById(id);
  if (!LC) {
    const banner = $('error-banner');
    banner.textContent = 'The charting library did not load: run `npm ci` in dashboards/live (or `make setup`), then reload.';
    banner.hidden = false;
    document.body.dataset.status = 'error';
    return;
  }

  const state = (window.dashboardState = {
    status: 'loading', // loading | ok | empty | error
    error: null,
    symbol: null,
    timeframe: '1m', // 1m (enriched bars) | 5m | 15m (final and open candles with their indicators)
    symbols: [],
    candles: 0,
    patternMarkers: 0, // candlestick patterns marked on the chart
    lastBarTime: null, // epoch seconds of the latest bar drawn
    feed: 0, // signals listed in the feed
    alerts: 0, // alerts listed in the alerts feed
    newAlerts: 0, // of which arrived while the page was open (highlighted)
    updatedAt: null,
  });

  class ApiError extends Error {
    constructor(message, status) {
      super(message);
      this.status = status;
    }
  }

  async function getJSON(path) {
    let response;
    try {
      response = await fetch(path, { cache: 'no-store' });
    } catch (_) {
      throw new ApiError('The dashboard server is unreachable: is `make run` still running?', 0);
    }
    let body = null;
    try {
      body = await response.json();
    } catch (_) { /* not JSON: reported by status below */ }
    if (!response.ok) throw new ApiError((body && body.error) || `HTTP ${response.status}`, response.status);
    return body;
  }

  // --- formatting -------------------------------------------------------------------------------
  const isNum = (v) => typeof v === 'number' && Number.isFinite(v);
  function num(v, digits = 2) {
    if (!isNum(v)) return '—';
    const d = Math.abs(v) < 1 && v !== 0 ? Math.max(digits, 4) : digits;
    return v.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d });
  }
  const pct = (v) => (isNum(v) ? `${v >= 0 ? '+' : ''}${(v * 100).toFixed(2)}%` : '—');
  const int = (v) => (isNum(v) ? Math.round(v).toLocaleString('en-US') : '—');
  const utc = (seconds) => new Date(seconds * 1000).toISOString().replace('T', ' ').slice(5, 16);
  const dirColor = (d) => (d === 'up' ? UP : d === 'down' ? DOWN : FLAT);

  // --- chart ------------------------------------------------------------------------------------
  function createDashboardChart(container) {
    const chart = LC.createChart(container, {
      autoSize: true,
      layout: {
        background: { type: LC.ColorType.Solid, color: '#131722' },
        textColor: '#d1d4dc',
        fontSize: 12,
        panes: { separatorColor: '#2a2e39', separatorHoverColor: '#363a45', enableResize: true },
      },
      grid: { vertLines: { color: '#1c2030' }, horzLines: { color: '#1c2030' } },
      rightPriceScale: { borderColor: '#2a2e39' },
      timeScale: { borderColor: '#2a2e39', timeVisible: true, secondsVisible: false, rightOffset: 4 },
      crosshair: { mode: LC.CrosshairMode.Normal },
    });
    const overlay = { lastValueVisible: false, priceLineVisible: false, crosshairMarkerVisible: false };
    const line = (pane, color, options = {}) =>
      chart.addSeries(LC.LineSeries, { color, lineWidth: 1, ...overlay, ...options }, pane);

    const series = {
      candles: chart.addSeries(LC.CandlestickSeries, {
        upColor: UP, downColor: DOWN, wickUpColor: UP, wickDownColor: DOWN, borderVisible: false,
      }, 0),
      bbUpper: line(0, 'rgba(66, 133, 244, 0.75)'),
      bbLower: line(0, 'rgba(66, 133, 244, 0.75)'),
      sma20: line(0, '#f5a623', { lineWidth: 2 }),
      sma50: line(0, '#d65bf2', { lineWidth: 2 }),
      vwap: line(0, '#26c6da', { lineStyle: LC.LineStyle.Dashed, lineWidth: 2 }),
      volume: chart.addSeries(LC.HistogramSeries, { priceFormat: { type: 'volume' }, ...overlay }, 1),
      rsi: line(2, '#b39ddb', { lineWidth: 2, lastValueVisible: true }),
      macdHist: chart.addSeries(LC.HistogramSeries, overlay, 3),
      macd: line(3, '#2962ff', { lineWidth: 2 }),
      macdSignal: line(3, '#ff9800', { lineWidth: 2 }),
    };
    series.rsi.createPriceLine({ price: 70, color: DOWN, lineStyle: LC.LineStyle.Dashed, lineWidth: 1, title: '70' });
    series.rsi.createPriceLine({ price: 30, color: UP, lineStyle: LC.LineStyle.Dashed, lineWidth: 1, title: '30' });
    const markers = LC.createSeriesMarkers(series.candles, []);

    const panes = chart.panes();
    [0.56, 0.14, 0.15, 0.15].forEach((factor, i) => panes[i].setStretchFactor(factor));
    ['', 'Volume', 'RSI 14', 'MACD 12 26 9'].forEach((text, i) => {
      if (text) {
        LC.createTextWatermark(panes[i], {
          horzAlign: 'left', vertAlign: 'top',
          lines: [{ text, color: 'rgba(209, 212, 220, 0.55)', fontSize: 12 }],
        });
      }
    });
    return { chart, series, markers };
  }

  // One bar -> the data point of every series (a point without value leaves a gap).
  function points(bar) {
    const t = bar.time;
    const value = (v) => (isNum(v) ? { time: t, value: v } : { time: t });
    const up = bar.close >= bar.open;
    return {
      candles: { time: t, open: bar.open, high: bar.high, low: bar.low, close: bar.close },
      bbUpper: value(bar.bb_upper),
      bbLower: value(bar.bb_lower),
      sma20: value(bar.sma_20),
      sma50: value(bar.sma_50),
      vwap: value(bar.vwap),
      volume: { time: t, value: bar.volume || 0, color: up ? 'rgba(38, 166, 154, 0.5)' : 'rgba(239, 83, 80, 0.5)' },
      rsi: value(bar.rsi_14),
      macdHist: isNum(bar.macd_hist)
        ? { time: t, value: bar.macd_hist, color: bar.macd_hist >= 0 ? 'rgba(38, 166, 154, 0.6)' : 'rgba(239, 83, 80, 0.6)' }
        : { time: t },
      macd: value(bar.macd),
      macdSignal: value(bar.macd_signal),
    };
  }

  // Short labels keep a busy chart readable; the legend's tooltip explains them.
  const MARKERS = {
    sma_cross: { up: 'Golden', down: 'Death' },
    macd_cross: { text: 'M' },
    rsi_zone: { text: 'RSI' },
    bb_breakout: { text: 'BB' },
    volume_spike: { text: 'V', shape: 'circle' },
    price_anomaly: { text: '!', shape: 'square' },
  };
  // Candlestick patterns that are signals (Analytics.signal_patterns): a short name on the bar.
  const PATTERN_LABELS = {
    CDLENGULFING: 'Engulf', CDLPIERCING: 'Pierce', CDLDARKCLOUDCOVER: 'DkCloud', CDLMORNINGSTAR: 'MStar',
    CDLEVENINGSTAR: 'EStar', CDL3WHITESOLDIERS: '3WS', CDL3BLACKCROWS: '3BC', CDLHAMMER: 'Hammer',
    CDLSHOOTINGSTAR: 'SStar', CDLDOJI: 'Doji', CDLHARAMI: 'Harami', CDLMARUBOZU: 'Maru',
  };
  const patternLabel = (name) => PATTERN_LABELS[name] || name.replace(/^CDL/, '');

  function markersOf(bar) {
    return (bar.signals || []).map((s) => {
      if (s.type === 'candle_pattern') {
        const up = s.direction === 'up';
        return {
          time: bar.time, position: up ? 'belowBar' : 'aboveBar', shape: 'square', color: up ? '#7bd88f' : '#ff8a80',
          text: patternLabel(s.detail), id: 'pattern',
        };
      }
      if (s.type === 'trend_change') {
        // Frequent and minor: a small dot, no label.
        return { time: bar.time, position: 'inBar', shape: 'circle', color: dirColor(s.direction), size: 0.4 };
      }
      const up = s.direction === 'up';
      const style = MARKERS[s.type] || { text: s.type };
      const text = style.text || (up ? style.up : style.down);
      return {
        time: bar.time,
        position: up ? 'belowBar' : 'aboveBar',
        shape: style.shape || (up ? 'arrowUp' : 'arrowDown'),
        color: dirColor(s.direction),
        // A signal found on 5- or 15-minute candles says so.
        text: s.timeframe && s.timeframe !== '1m' ? `${s.timeframe} ${text}` : text,
      };
    });
  }

  // --- the selected symbol's bars -------------------------------------------------------------
  const view = createDashboardChart($('chart'));
  const bars = new Map(); // time -> bar, for the selected symbol
  let generation = 0; // bumps on every symbol change: answers for an older symbol are dropped

  function resetChart() {
    bars.clear();
    for (const s of Object.values(view.series)) s.setData([]);
    view.markers.setMarkers([]);
    state.candles = 0;
    state.lastBarTime = null;
    $('chart').dataset.candles = '0';
  }

  function drawInitial(list) {
    list.forEach((bar) => bars.set(bar.time, bar));
    const all = list.map(points);
    for (const [name, s] of Object.entries(view.series)) s.setData(all.map((p) => p[name]));
    if (list.length > VISIBLE_BARS) {
      view.chart.timeScale().setVisibleLogicalRange({ from: list.length - VISIBLE_BARS, to: list.length + 4 });
    } else {
      view.chart.timeScale().fitContent();
    }
  }

  function drawNew(list) {
    for (const bar of list) {
      if (state.lastBarTime !== null && bar.time < state.lastBarTime) continue; // already superseded
      bars.set(bar.time, bar); // a revision replaces the bar of the same time
      const p = points(bar);
      for (const [name, s] of Object.entries(view.series)) s.update(p[name]);
      state.lastBarTime = bar.time;
    }
  }

  function afterDraw() {
    const ordered = [...bars.values()];
    const marks = ordered.flatMap(markersOf);
    view.markers.setMarkers(marks.map(({ id, ...mark }) => mark));
    state.patternMarkers = marks.filter((m) => m.id === 'pattern').length;
    state.candles = view.series.candles.data().length;
    state.lastBarTime = ordered.length ? ordered[ordered.length - 1].time : null;
    $('chart').dataset.candles = String(state.candles);
    renderLatest(ordered[ordered.length - 1]);
  }

  async function pollBars() {
    const symbol = state.symbol;
    const gen = generation;
    const initial = state.lastBarTime === null;
    const query = initial ? `limit=${INITIAL_BARS}` : `after=${state.lastBarTime * 1000}&limit=${INITIAL_BARS}`;
    let body;
    try {
      body = await getJSON(`/api/bars?symbol=${encodeURIComponent(symbol)}&timeframe=${state.timeframe}&${query}`);
    } catch (err) {
      if (err.status === 400 && gen === generation) {
        showEmpty('Invalid symbol', `${err.message}.`);
        return 'empty';
      }
      throw err;
    }
    if (gen !== generation) return null;
    if (body.bars.length) {
      (initial ? drawInitial : drawNew)(body.bars);
      afterDraw();
    }
    return state.candles ? 'ok' : emptyForSymbol(symbol);
  }

  function emptyForSymbol(symbol) {
    if (!state.symbols.length) {
      showEmpty('No data yet', 'OpenSearch holds no enriched bars yet. Start the pipeline with `make run`: ' +
        'bars appear here within seconds of arriving, without reloading.');
    } else if (!state.symbols.some((s) => s.symbol === symbol)) {
      showEmpty(`Unknown symbol ${symbol}`, `OpenSearch has no bars for ${symbol}. Pick one of the ` +
        `${state.symbols.length} symbols above; if ${symbol} is being fed, its bars appear here as they arrive.`);
    } else {
      showEmpty(`No bars for ${symbol} yet`, 'Waiting for the pipeline; this page updates by itself.');
    }
    return 'empty';
  }

  function showEmpty(title, text) {
    $('empty-title').textContent = title;
    $('empty-text').textContent = text;
    $('empty-state').hidden = false;
    renderLatest(null);
  }

  // --- latest indicators ----------------------------------------------------------------------
  const INDICATORS = [
    ['Close', (b) => num(b.close)], ['Change', (b) => pct(b.return_1), (b) => b.return_1],
    ['Volume', (b) => int(b.volume)], ['Volume z', (b) => num(b.volume_z_20)],
    ['SMA 5', (b) => num(b.sma_5)], ['SMA 20', (b) => num(b.sma_20)], ['SMA 50', (b) => num(b.sma_50)],
    ['EMA 12', (b) => num(b.ema_12)], ['EMA 26', (b) => num(b.ema_26)],
    ['BB upper', (b) => num(b.bb_upper)], ['BB middle', (b) => num(b.bb_middle)], ['BB lower', (b) => num(b.bb_lower)],
    ['VWAP', (b) => num(b.vwap)], ['RSI 14', (b) => num(b.rsi_14)],
    ['MACD', (b) => num(b.macd, 4)], ['MACD signal', (b) => num(b.macd_signal, 4)],
    ['MACD hist', (b) => num(b.macd_hist, 4), (b) => b.macd_hist],
    ['Trend', (b) => b.trend || '—'], ['Session', (b) => b.session || '—'],
    ['Patterns', (b) => patternsText(b.patterns)],
  ];

  // The bar's candlestick patterns as TA-Lib names them, with the sign of their output.
  function patternsText(patterns) {
    const names = Object.entries(patterns || {});
    if (!names.length) return '—';
    return names.map(([name, value]) => `${patternLabel(name)} ${value > 0 ? '+' : '−'}${Math.abs(value)}`).join(', ');
  }

  function renderLatest(bar) {
    const list = $('indicators');
    list.replaceChildren();
    for (const [label, format, sign] of INDICATORS) {
      const dt = document.createElement('dt');
      dt.textContent = label;
      const dd = document.createElement('dd');
      dd.textContent = bar ? format(bar) : '—';
      const s = bar && sign ? sign(bar) : null;
      if (isNum(s) && s !== 0) dd.className = s > 0 ? 'up' : 'down';
      list.append(dt, dd);
    }
    $('latest-ts').textContent = bar ? `${utc(bar.time)} UTC` : '';
    const quote = $('quote');
    quote.replaceChildren();
    if (bar) {
      const price = document.createElement('strong');
      price.textContent = num(bar.close);
      const change = document.createElement('span');
      change.textContent = pct(bar.return_1);
      change.className = isNum(bar.return_1) && bar.return_1 < 0 ? 'down' : 'up';
      quote.append(`${state.symbol} `, price, ' ', change);
    }
  }

  // --- symbols --------------------------------------------------------------------------------
  let symbolsAt = 0;

  async function refreshSymbols() {
    const body = await getJSON('/api/symbols');
    symbolsAt = Date.now();
    state.symbols = body.symbols;
    if (!state.symbol && state.symbols.length) {
      const busiest = state.symbols.reduce((a, b) => (b.bars > a.bars ? b : a));
      selectSymbol(busiest.symbol);
    }
    renderPicker();
  }

  function renderPicker() {
    const picker = $('symbol-picker');
    const names = state.symbols.map((s) => s.symbol);
    if (state.symbol && !names.includes(state.symbol)) names.unshift(state.symbol);
    if (picker.options.length !== names.length || names.some((n, i) => picker.options[i].value !== n)) {
      picker.replaceChildren(...names.map((n) => new Option(n, n)));
    }
    picker.value = state.symbol || '';
    renderFreshness();
  }

  // The selected symbol's freshness, as the server labels it (dashboards/live/freshness.py).
  function renderFreshness() {
    const entry = state.symbols.find((s) => s.symbol === state.symbol);
    const fresh = entry && entry.freshness ? entry.freshness : { state: 'none', label: '' };
    const badge = $('freshness');
    badge.dataset.state = fresh.state;
    badge.textContent = fresh.label;
  }

  function selectSymbol(symbol) {
    if (symbol === state.symbol) return;
    generation += 1;
    state.symbol = symbol;
    const url = new URL(window.location.href);
    url.searchParams.set('symbol', symbol);
    window.history.replaceState(null, '', url);
    resetChart();
    renderLatest(null);
    renderPicker();
    pollNow();
  }

  // --- signal feed (all symbols) --------------------------------------------------------------
  const feed = new Map(); // id -> signal
  let feedSince = null; // epoch ms of the newest signal seen: later polls ask only from there on

  async function pollSignals() {
    const query = feedSince === null ? `limit=${FEED_SIZE}` : `since=${feedSince}&limit=${FEED_SIZE}`;
    const body = await getJSON(`/api/signals?${query}`);
    const first = feed.size === 0;
    const seen = (s) => feed.has(s.id) && feed.get(s.id).value === s.value && feed.get(s.id).direction === s.direction;
    const fresh = body.signals.filter((s) => !seen(s)); // new, or re-emitted by a revised bar
    if (!fresh.length && !first) return;
    fresh.forEach((s) => feed.set(s.id, s));
    const newest = [...feed.values()].sort((a, b) => b.time - a.time || a.id.localeCompare(b.id)).slice(0, FEED_SIZE);
    feed.clear();
    newest.forEach((s) => feed.set(s.id, s));
    if (newest.length) feedSince = newest[0].time * 1000;
    renderFeed(newest, new Set(first ? [] : fresh.map((s) => s.id)));
  }

  function renderFeed(list, highlight) {
    const rows = list.map((s) => {
      const tr = document.createElement('tr');
      tr.dataset.symbol = s.symbol;
      if (highlight.has(s.id)) tr.className = 'new';
      const cells = [utc(s.time), s.symbol, s.type.replace('_', ' '), s.direction, num(s.value)];
      cells.forEach((text, i) => {
        const td = document.createElement('td');
        td.textContent = text;
        if (i === 3) td.style.color = dirColor(s.direction);
        tr.append(td);
      });
      tr.title = s.detail || '';
      return tr;
    });
    $('signal-feed').replaceChildren(...rows);
    $('feed-empty').hidden = list.length > 0;
    state.feed = list.length;
  }

  // --- alerts feed (python -m alerts writes them; highlighted while new) ------------------------
  const ALERTS_SIZE = 20;
  const NEW_FOR_MS = 60000;
  const alerts = new Map(); // id -> alert
  const arrivedAt = new Map(); // id -> when this page first saw it, for alerts that arrived live
  let alertsSince = null;
  let alertsLoaded = false;

  async function pollAlerts() {
    const query = alertsSince === null ? `limit=${ALERTS_SIZE}` : `since=${alertsSince}&limit=${ALERTS_SIZE}`;
    const body = await getJSON(`/api/alerts?${query}`);
    const now = Date.now();
    for (const a of body.alerts) {
      if (!alerts.has(a.id) && alertsLoaded) arrivedAt.set(a.id, now);
      alerts.set(a.id, a);
    }
    alertsLoaded = true;
    const newest = [...alerts.values()].sort((a, b) => b.sent_ms - a.sent_ms || b.ts.localeCompare(a.ts)).slice(0, ALERTS_SIZE);
    alerts.clear();
    newest.forEach((a) => alerts.set(a.id, a));
    if (newest.length) alertsSince = newest[0].sent_ms;
    renderAlerts(newest, body.status, now);
  }

  function renderAlerts(list, status, now) {
    const isNew = (a) => arrivedAt.has(a.id) && now - arrivedAt.get(a.id) < NEW_FOR_MS;
    const items = list.map((a) => {
      const li = document.createElement('li');
      li.dataset.symbol = a.symbol;
      if (isNew(a)) li.className = 'new';
      const when = document.createElement('span');
      when.className = 'when';
      when.textContent = `${a.rule} · sent ${new Date(a.sent_ms).toLocaleTimeString()}`;
      li.append(a.subject, when);
      li.title = a.id;
      return li;
    });
    $('alert-feed').replaceChildren(...items);
    const fresh = list.filter(isNew).length;
    $('alerts-new').hidden = fresh === 0;
    $('alerts-new').textContent = `${fresh} new`;
    const empty = $('alerts-empty');
    empty.hidden = list.length > 0;
    empty.textContent = status === 'off' ? 'Alerts are off (the server has no --alerts-table).'
      : status === 'unavailable' ? 'The alerts table is unreachable; retrying.' : 'No alerts yet.';
    state.alerts = list.length;
    state.newAlerts = fresh;
  }

  // --- status ---------------------------------------------------------------------------------
  function setStatus(status, error = null) {
    state.status = status;
    state.error = error;
    document.body.dataset.status = status;
    const banner = $('error-banner');
    banner.hidden = !error;
    banner.textContent = error || '';
    $('live-dot').className = `dot ${error ? 'down' : 'up'}`;
    if (status !== 'empty') $('empty-state').hidden = true;
    if (error) {
      $('live-text').textContent = 'disconnected, retrying…';
    } else {
      state.updatedAt = new Date();
      $('live-text').textContent = `live · ${state.updatedAt.toLocaleTimeString()}`;
    }
  }

  // --- polling: one round at a time, every POLL_MS, or at once after a symbol change -------------
  let timer = null;
  let running = false;
  let again = false;

  async function round() {
    if (Date.now() - symbolsAt >= SYMBOLS_EVERY_MS || !state.symbol) await refreshSymbols();
    const [barsStatus] = await Promise.all([
      state.symbol ? pollBars() : Promise.resolve(emptyForSymbol(null)),
      pollSignals(),
      pollAlerts(),
    ]);
    if (barsStatus) setStatus(barsStatus);
  }

  async function poll() {
    if (running) {
      again = true;
      return;
    }
    running = true;
    try {
      await round();
    } catch (err) {
      setStatus('error', err.message);
    } finally {
      running = false;
      timer = setTimeout(poll, again ? 0 : POLL_MS);
      again = false;
    }
  }

  function pollNow() {
    clearTimeout(timer);
    poll();
  }

  // --- timeframe: 1m bars, or the 5- and 15-minute candles -----------------------------------------
  const TIMEFRAME_LABELS = { '1m': '1-min candles', '5m': '5-min candles', '15m': '15-min candles' };

  function selectTimeframe(timeframe) {
    if (!TIMEFRAME_LABELS[timeframe]) return;
    for (const button of document.querySelectorAll('#timeframe button')) {
      button.setAttribute('aria-pressed', String(button.dataset.timeframe === timeframe));
    }
    $('legend-candles').textContent = TIMEFRAME_LABELS[timeframe];
    if (timeframe === state.timeframe) return;
    generation += 1;
    state.timeframe = timeframe;
    const url = new URL(window.location.href);
    url.searchParams.set('timeframe', timeframe);
    window.history.replaceState(null, '', url);
    resetChart();
    renderLatest(null);
    pollNow();
  }

  $('timeframe').addEventListener('click', (e) => {
    const button = e.target.closest('button');
    if (button) selectTimeframe(button.dataset.timeframe);
  });
  $('symbol-picker').addEventListener('change', (e) => selectSymbol(e.target.value));
  $('alert-feed').addEventListener('click', (e) => {
    const item = e.target.closest('li');
    if (item) selectSymbol(item.dataset.symbol);
  });
  $('signal-feed').addEventListener('click', (e) => {
    const row = e.target.closest('tr');
    if (row) selectSymbol(row.dataset.symbol);
  });

  selectTimeframe(new URL(window.location.href).searchParams.get('timeframe') || '1m');
  const wanted = new URL(window.location.href).searchParams.get('symbol');
  if (wanted) selectSymbol(wanted.trim().toUpperCase());
  else pollNow();
})();
