import { useEffect, useRef, useState, useSyncExternalStore } from 'react';
import { useStore } from '../../app/store';
import { SizePresetSelect } from '../generate/SizePresetSelect';
import { client } from '../../lib/client';
import type { ToolName } from './document/editor';
import { KonvaView } from './render/KonvaView';
import { pngBase64 } from './render/rasterize';
import { canvasEditor, controlNets } from './slice';

// Icons as small SVG paths: emoji glyphs are missing from many Linux fonts.
const ICONS: Record<ToolName, string> = {
  move: 'M8 1v14M1 8h14M8 1 5.5 3.5M8 1l2.5 2.5M8 15l-2.5-2.5M8 15l2.5-2.5M1 8l2.5-2.5M1 8l2.5 2.5M15 8l-2.5-2.5M15 8l-2.5 2.5',
  brush: 'M3 13c2 0 3-1 3-2.5S7 8 8.5 8 11 9 11 10.5 9 14 3 13zM9 7.5l5-5',
  eraser: 'M2 11l6-6 5 5-4 4H5zM6 14h8',
  rect: 'M2.5 3.5h11v9h-11z',
  lasso: 'M8 3c3.5 0 6 1.5 6 3.5S11.5 10 8 10 2 8.5 2 6.5 4.5 3 8 3zM5 9.5c-1 1.5-.5 3 1 3.5',
  frame: 'M1 4h3M4 1v3M12 1v3M12 4h3M1 12h3M4 12v3M12 12h3M12 12v3M4 4h8v8H4z',
  pen: 'M2 14l1-4 8-8 3 3-8 8zM10 3l3 3',
};

const TOOLS: { tool: ToolName; label: string; key: string }[] = [
  { tool: 'move', label: 'Move / pan', key: 'V' },
  { tool: 'brush', label: 'Mask brush', key: 'B' },
  { tool: 'eraser', label: 'Mask eraser', key: 'E' },
  { tool: 'rect', label: 'Rectangle to mask', key: 'M' },
  { tool: 'lasso', label: 'Lasso to mask', key: 'L' },
  { tool: 'frame', label: 'Generation frame', key: 'F' },
  { tool: 'pen', label: 'Control pen (edges)', key: 'P' },
];

function ToolIcon({ tool }: { tool: ToolName }) {
  return (
    <svg width="16" height="16" viewBox="0 0 16 16" aria-hidden fill="none" stroke="currentColor" strokeWidth="1.4" strokeLinecap="round" strokeLinejoin="round">
      <path d={ICONS[tool]} />
    </svg>
  );
}

/** Re-render when the editor changes (tool, brush, undo state), reading plain values. */
function useEditor<T>(select: () => T): T {
  return useSyncExternalStore((cb) => canvasEditor.subscribe(cb), select);
}

let view: KonvaView | null = null;
/** Images for rasterizing the composite: the same decoded images Konva shows. */
export const loadImage = (src: string) => (view ? view.image(src) : Promise.reject(new Error('canvas not mounted')));

async function importFile(file: File, at?: { x: number; y: number }) {
  const s = useStore.getState();
  try {
    const bitmap = await createImageBitmap(file).catch(() => {
      throw new Error(`${file.name} is not an image Atelier can read (PNG, JPEG or WebP).`);
    });
    if (bitmap.width * bitmap.height > 8192 * 8192) throw new Error(`${file.name} is ${bitmap.width}×${bitmap.height}: too large for the canvas (8192×8192 at most).`);
    const c = document.createElement('canvas');
    c.width = bitmap.width;
    c.height = bitmap.height;
    c.getContext('2d')!.drawImage(bitmap, 0, 0);
    const asset = await client.call('assets.put', { png: await pngBase64(c) });
    const doc = canvasEditor.doc;
    const fresh = doc.images.length === 0;
    canvasEditor.addImage({ name: file.name, src: asset.path, x: fresh ? 0 : Math.round(at?.x ?? doc.frame.x), y: fresh ? 0 : Math.round(at?.y ?? doc.frame.y), width: asset.width, height: asset.height });
    if (fresh) canvasEditor.setFrame({ x: 0, y: 0, width: Math.min(asset.width, 4096), height: Math.min(asset.height, 4096) });
  } catch (err) {
    s.toast('error', (err as Error).message);
  }
}

function Toolbar() {
  const tool = useEditor(() => canvasEditor.tool);
  const size = useEditor(() => canvasEditor.brush.size);
  const hardness = useEditor(() => canvasEditor.brush.hardness);
  const opacity = useEditor(() => canvasEditor.brush.opacity);
  const canUndo = useEditor(() => canvasEditor.canUndo);
  const canRedo = useEditor(() => canvasEditor.canRedo);
  const fileInput = useRef<HTMLInputElement>(null);
  return (
    <div className="canvas-toolbar" role="toolbar" aria-label="Canvas tools">
      {TOOLS.map((t) => (
        <button key={t.tool} type="button" className={`icon${tool === t.tool ? ' active' : ''}`} aria-pressed={tool === t.tool} title={`${t.label} (${t.key})`} aria-label={t.label} onClick={() => canvasEditor.setTool(t.tool)}>
          <ToolIcon tool={t.tool} />
        </button>
      ))}
      <span className="sep" />
      <label className="inline">
        Size
        <input type="range" aria-label="Brush size" min={1} max={400} value={size} onChange={(e) => canvasEditor.setBrush({ size: Number(e.target.value) })} />
        <span className="num">{size}</span>
      </label>
      <label className="inline">
        Hardness
        <input type="range" aria-label="Brush hardness" min={0} max={1} step={0.05} value={hardness} onChange={(e) => canvasEditor.setBrush({ hardness: Number(e.target.value) })} />
      </label>
      <label className="inline">
        Opacity
        <input type="range" aria-label="Brush opacity" min={0.05} max={1} step={0.05} value={opacity} onChange={(e) => canvasEditor.setBrush({ opacity: Number(e.target.value) })} />
      </label>
      <span className="sep" />
      <button type="button" className="icon" title="Undo (Ctrl+Z)" aria-label="Undo" disabled={!canUndo} onClick={() => canvasEditor.undo()}>
        ↶
      </button>
      <button type="button" className="icon" title="Redo (Ctrl+Shift+Z)" aria-label="Redo" disabled={!canRedo} onClick={() => canvasEditor.redo()}>
        ↷
      </button>
      <span className="sep" />
      <button type="button" title="Fit to screen (Shift+1)" onClick={() => view && canvasEditor.fit(view.stage.size())}>
        Fit
      </button>
      <button type="button" title="Actual pixels (Ctrl+0)" onClick={() => view && canvasEditor.actualSize(view.stage.size())}>
        100%
      </button>
      <button type="button" title="Import an image" onClick={() => fileInput.current?.click()}>
        Import…
      </button>
      <input
        ref={fileInput}
        type="file"
        accept="image/png,image/jpeg,image/webp"
        hidden
        data-testid="canvas-file-input"
        onChange={(e) => {
          const f = e.target.files?.[0];
          if (f) void importFile(f);
          e.target.value = '';
        }}
      />
    </div>
  );
}

function CanvasSettings() {
  const mask = useEditor(() => canvasEditor.doc.mask);
  const control = useEditor(() => canvasEditor.doc.control);
  const images = useEditor(() => canvasEditor.doc.images);
  const frame = useEditor(() => canvasEditor.doc.frame);
  const o = useStore((s) => s.canvasOptions);
  const models = useStore((s) => s.models);
  const form = useStore((s) => s.form);
  const busy = useStore((s) => s.canvasBusy);
  const set = useStore((s) => s.setCanvasOption);
  const nets = controlNets(models);
  const [cannyBusy, setCannyBusy] = useState(false);

  // Live canny preview: re-derive edges from the top image layer when thresholds change.
  const deriveEdges = async (low: number, high: number) => {
    const src = images[images.length - 1];
    if (!src) return useStore.getState().toast('info', 'Import or accept an image first: edges are derived from the top image layer.');
    setCannyBusy(true);
    try {
      const r = await client.call('canvas.canny', { image: src.src, low, high });
      canvasEditor.setControl({ edges: { src: r.path, rect: { x: src.x, y: src.y, width: src.width, height: src.height }, low, high }, enabled: true });
    } catch (err) {
      useStore.getState().toast('error', (err as Error).message);
    } finally {
      setCannyBusy(false);
    }
  };

  return (
    <section className="canvas-settings" aria-label="Canvas settings">
      <h3>Mask</h3>
      <div className="button-row">
        <button type="button" onClick={() => canvasEditor.invertMask()} title="Invert mask">
          Invert
        </button>
        <button type="button" onClick={() => canvasEditor.clearMask()} title="Clear mask">
          Clear
        </button>
        <label className="inline">
          <input type="checkbox" checked={mask.visible} onChange={() => canvasEditor.commit((d) => ({ ...d, mask: { ...d.mask, visible: !d.mask.visible } }))} /> Show
        </label>
      </div>
      {mask.image && (
        <p className="muted small" data-testid="mask-restored">
          Mask restored from the history entry: paint or erase on top of it.
        </p>
      )}
      <label className="field">
        <span className="field-label">Feather {mask.feather} px</span>
        <input type="range" aria-label="Mask feather" min={0} max={64} value={mask.feather} onChange={(e) => canvasEditor.setFeather(Number(e.target.value))} />
      </label>
      <label className="field">
        <span className="field-label">Strength {form.strength.toFixed(2)}</span>
        <input type="range" aria-label="Strength" min={0} max={1} step={0.01} value={form.strength} onChange={(e) => useStore.getState().setField('strength', Number(e.target.value))} />
      </label>
      <label className="inline">
        <input type="checkbox" checked={o.maskOnly} onChange={(e) => set('maskOnly', e.target.checked)} /> Mask only (crop to the mask, paste back)
      </label>
      {o.maskOnly && (
        <label className="field">
          <span className="field-label">Padding {o.maskPadding} px</span>
          <input type="range" min={0} max={256} step={8} value={o.maskPadding} onChange={(e) => set('maskPadding', Number(e.target.value))} />
        </label>
      )}
      <label className="field">
        <span className="field-label">Fill for empty canvas (outpainting)</span>
        <select value={o.fill} onChange={(e) => set('fill', e.target.value as typeof o.fill)}>
          <option value="edge">Extend edges</option>
          <option value="blur">Blurred edges</option>
          <option value="telea">Inpaint (Telea)</option>
          <option value="noise">Noise</option>
        </select>
      </label>
      <label className="field">
        <span className="field-label">Frame size</span>
        <SizePresetSelect name="frameSize" label="Frame size" width={frame.width} height={frame.height} onChange={(width, height) => canvasEditor.setFrame({ ...frame, width, height })} />
      </label>
      <p className="muted small">
        Frame {frame.width}×{frame.height} at {frame.x}, {frame.y} · drag it with the frame tool (F)
      </p>

      <h3>Control (canny edges)</h3>
      <label className="inline">
        <input type="checkbox" aria-label="Use control layer" checked={control.enabled} onChange={() => canvasEditor.setControl({ enabled: !control.enabled })} /> Use control layer
      </label>
      <label className="field">
        <span className="field-label">ControlNet</span>
        <select value={o.controlModelId || nets[0]?.id || ''} onChange={(e) => set('controlModelId', e.target.value)}>
          {nets.length === 0 && <option value="">No ControlNet in the library</option>}
          {nets.map((m) => (
            <option key={m.id} value={m.id}>
              {m.name} · {m.family}
            </option>
          ))}
        </select>
      </label>
      <div className="row">
        {(['cannyLow', 'cannyHigh'] as const).map((key) => (
          <label className="field" key={key}>
            <span className="field-label">
              {key === 'cannyLow' ? 'Low' : 'High'} {o[key]}
            </span>
            <input
              type="range"
              aria-label={`Canny ${key === 'cannyLow' ? 'low' : 'high'} threshold`}
              min={0}
              max={500}
              value={o[key]}
              onChange={(e) => set(key, Number(e.target.value))}
              // The live preview re-derives on release: each derive is a worker round trip.
              onPointerUp={() => control.edges && void deriveEdges(useStore.getState().canvasOptions.cannyLow, useStore.getState().canvasOptions.cannyHigh)}
            />
          </label>
        ))}
      </div>
      <div className="button-row">
        <button type="button" disabled={cannyBusy} onClick={() => deriveEdges(o.cannyLow, o.cannyHigh)}>
          {cannyBusy ? 'Finding edges…' : 'Edges from image'}
        </button>
        <button type="button" onClick={() => canvasEditor.clearControl()}>
          Clear
        </button>
      </div>
      <div className="row">
        <label className="field">
          <span className="field-label">Scale {control.scale.toFixed(2)}</span>
          <input type="range" min={0} max={2} step={0.05} value={control.scale} onChange={(e) => canvasEditor.setControl({ scale: Number(e.target.value) })} />
        </label>
      </div>
      <div className="row">
        <label className="field">
          <span className="field-label">Start {control.start.toFixed(2)}</span>
          <input type="range" min={0} max={1} step={0.05} value={control.start} onChange={(e) => canvasEditor.setControl({ start: Math.min(Number(e.target.value), control.end) })} />
        </label>
        <label className="field">
          <span className="field-label">End {control.end.toFixed(2)}</span>
          <input type="range" min={0} max={1} step={0.05} value={control.end} onChange={(e) => canvasEditor.setControl({ end: Math.max(Number(e.target.value), control.start) })} />
        </label>
      </div>
      <button type="button" className="primary generate-button" disabled={busy} onClick={() => useStore.getState().submitCanvas(loadImage)}>
        {busy ? 'Preparing…' : 'Generate in frame'}
      </button>
    </section>
  );
}

function StagingStrip() {
  const staged = useStore((s) => s.staged);
  const pending = useStore((s) => s.canvasJobIds.length);
  const progress = useStore((s) => {
    const id = s.canvasJobIds[s.canvasJobIds.length - 1];
    return id ? s.progress[id] : undefined;
  });
  useEffect(() => {
    view?.setStaged(staged ? staged.generation.images[staged.index].path : null);
  }, [staged]);
  if (!staged && !pending) return null;
  return (
    <div className="staging" role="region" aria-label="Staging">
      {pending > 0 && !staged && <span className="muted">Generating… {progress ? `step ${progress.step} / ${progress.total}` : ''}</span>}
      {staged && (
        <>
          <div className="staging-thumbs">
            {staged.generation.images.map((img, i) => (
              <button key={img.id} type="button" className={`tile small${i === staged.index ? ' selected' : ''}`} onClick={() => useStore.getState().stageIndex(i)} aria-label={`Result ${i + 1}`}>
                <img src={client.fileUrl(img.path)} alt={`Staged result, seed ${img.seed}`} data-testid="staged-image" />
              </button>
            ))}
          </div>
          <button type="button" className="primary" onClick={() => useStore.getState().acceptStaged()} title="Accept as a new layer (Enter)">
            Accept
          </button>
          <button type="button" onClick={() => useStore.getState().retryStaged(loadImage)} title="Try again with a new seed">
            Try again
          </button>
          <button type="button" className="danger" onClick={() => useStore.getState().discardStaged()} title="Discard (Esc)">
            Discard
          </button>
        </>
      )}
    </div>
  );
}

function Stage() {
  const host = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const el = host.current!;
    const v = new KonvaView(el, canvasEditor, (rel) => client.fileUrl(rel));
    view = v;
    if (canvasEditor.view.scale === 1 && canvasEditor.view.x === 0 && canvasEditor.view.y === 0) canvasEditor.fit(v.stage.size());
    const ro = new ResizeObserver(() => v.resize(el.clientWidth, el.clientHeight));
    ro.observe(el);
    const pos = (e: PointerEvent | WheelEvent) => {
      const r = el.getBoundingClientRect();
      return { x: e.clientX - r.left, y: e.clientY - r.top };
    };
    const down = (e: PointerEvent) => {
      el.setPointerCapture(e.pointerId);
      canvasEditor.pointerDown(pos(e), { button: e.button, alt: e.altKey, shift: e.shiftKey });
    };
    const move = (e: PointerEvent) => {
      // Coalesced events keep fast strokes smooth without a redraw per event.
      const events = e.getCoalescedEvents?.() ?? [e];
      for (const ce of events.length ? events : [e]) canvasEditor.pointerMove(pos(ce));
      v.setCursor(pos(e));
    };
    const up = () => canvasEditor.pointerUp();
    const wheel = (e: WheelEvent) => {
      e.preventDefault();
      canvasEditor.zoomAt(pos(e), Math.exp(-e.deltaY * 0.0015));
    };
    const leave = () => v.setCursor(null);
    const drop = (e: DragEvent) => {
      e.preventDefault();
      const f = e.dataTransfer?.files?.[0];
      if (f) void importFile(f, canvasEditor.toDoc({ x: e.offsetX, y: e.offsetY }));
    };
    const over = (e: DragEvent) => e.preventDefault();
    el.addEventListener('pointerdown', down);
    el.addEventListener('pointermove', move);
    el.addEventListener('pointerup', up);
    el.addEventListener('pointercancel', up);
    el.addEventListener('pointerleave', leave);
    el.addEventListener('wheel', wheel, { passive: false });
    el.addEventListener('drop', drop);
    el.addEventListener('dragover', over);
    return () => {
      ro.disconnect();
      v.destroy();
      view = null;
    };
  }, []);
  const tool = useEditor(() => canvasEditor.tool);
  const space = useEditor(() => canvasEditor.spaceHeld);
  return <div ref={host} className={`canvas-stage tool-${space ? 'move' : tool}`} data-testid="canvas-stage" aria-label="Canvas" role="application" />;
}

export function useCanvasShortcuts(active: boolean) {
  useEffect(() => {
    if (!active) return;
    const typing = (e: KeyboardEvent) => !!(e.target as HTMLElement)?.closest('input, textarea, select');
    const down = (e: KeyboardEvent) => {
      if (typing(e)) return;
      if (e.key === 'Enter' && useStore.getState().staged) return useStore.getState().acceptStaged();
      if (e.key === 'Escape' && useStore.getState().staged) return useStore.getState().discardStaged();
      if ((e.ctrlKey || e.metaKey) && e.key === '0' && view) {
        e.preventDefault();
        return canvasEditor.actualSize(view.stage.size());
      }
      if (e.shiftKey && e.key === '!' && view) return canvasEditor.fit(view.stage.size());
      if (canvasEditor.keyDown(e.key, { ctrl: e.ctrlKey, meta: e.metaKey, shift: e.shiftKey, alt: e.altKey })) e.preventDefault();
    };
    const up = (e: KeyboardEvent) => canvasEditor.keyUp(e.key);
    window.addEventListener('keydown', down);
    window.addEventListener('keyup', up);
    return () => {
      window.removeEventListener('keydown', down);
      window.removeEventListener('keyup', up);
    };
  }, [active]);
}

export function CanvasPage() {
  useCanvasShortcuts(true);
  return (
    <div className="canvas-page">
      <div className="canvas-main">
        <Toolbar />
        <Stage />
        <StagingStrip />
      </div>
      <CanvasSettings />
    </div>
  );
}
