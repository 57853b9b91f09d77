import { useEffect, useRef, useState } from 'react';
import type { Generation } from '../../../shared/contract';
import { useStore } from '../../app/store';
import { client } from '../../lib/client';

function Param({ k, v }: { k: string; v: React.ReactNode }) {
  return (
    <>
      <dt>{k}</dt>
      <dd>{v}</dd>
    </>
  );
}

/** The canvas inputs a generation was made with (frame, mask, control), in a line. */
function canvasInputs(g: Generation): React.ReactNode {
  const c = g.control as { canvas?: { frame: { x: number; y: number; width: number; height: number }; mask: string | null; maskOnly: boolean }; control?: { scale: number } } | null;
  if (!c) return null;
  const parts: React.ReactNode[] = [];
  if (c.canvas) {
    const f = c.canvas.frame;
    parts.push(`frame ${f.width}×${f.height} at ${f.x},${f.y}`);
    if (c.canvas.mask) parts.push(<a key="m" href={client.fileUrl(c.canvas.mask)} target="_blank" rel="noreferrer">mask</a>);
    if (c.canvas.maskOnly) parts.push('mask only');
  }
  if (c.control) parts.push(`canny control × ${c.control.scale}`);
  return parts.map((p, i) => (
    <span key={i}>
      {i > 0 && ' · '}
      {p}
    </span>
  ));
}

export function Detail({ g }: { g: Generation }) {
  const [armed, setArmed] = useState(false);
  const img = g.images[0];
  return (
    <aside className="detail" aria-label="Image details">
      <div className="detail-images">
        {g.images.map((i) => (
          <img key={i.id} src={client.fileUrl(i.path)} alt={`Seed ${i.seed}`} />
        ))}
      </div>
      <div className="detail-actions">
        <button type="button" className="primary" onClick={() => useStore.getState().restoreFrom(g)} title="Use these settings (R)">
          Use these settings
        </button>
        {img && (
          <button type="button" onClick={() => useStore.getState().useAsInit(img.id, img.path)}>
            Use as starting image
          </button>
        )}
        {img && (
          <button type="button" onClick={() => useStore.getState().sendToCanvas(img.path, img.width, img.height, `seed ${img.seed}`)}>
            Send to canvas
          </button>
        )}
        <button
          type="button"
          className={armed ? 'danger armed' : 'danger'}
          onClick={() => {
            if (!armed) {
              setArmed(true);
              setTimeout(() => setArmed(false), 3000);
            } else void useStore.getState().deleteGenerations([g.id]);
          }}
        >
          {armed ? 'Click again to delete' : 'Delete'}
        </button>
      </div>
      <dl className="params">
        <Param k="Prompt" v={<span className="prompt-text">{g.prompt}</span>} />
        {g.negativePrompt && <Param k="Negative" v={g.negativePrompt} />}
        <Param k="Model" v={`${g.modelName}${g.modelHash ? ` [${g.modelHash.slice(0, 10)}]` : ''}`} />
        {g.loras.length > 0 && (
          <Param
            k="LoRAs"
            v={
              <span data-testid="detail-loras">
                {g.loras.map((l, i) => (
                  <span key={i} title={l.hash ? `hash ${l.hash.slice(0, 10)}` : undefined}>
                    {i > 0 && ', '}
                    {l.name} × {Number(l.weight.toFixed(2))}
                  </span>
                ))}
              </span>
            }
          />
        )}
        <Param k="Mode" v={g.mode} />
        <Param k="Sampler" v={g.sampler} />
        <Param k="Steps" v={g.steps} />
        <Param k="CFG" v={g.cfg} />
        <Param k="Seed" v={g.images.map((i) => i.seed).join(', ')} />
        <Param k="Size" v={`${g.width} × ${g.height}`} />
        {g.strength != null && <Param k="Strength" v={g.strength} />}
        {canvasInputs(g) && <Param k="Canvas" v={canvasInputs(g)} />}
        <Param k="Backend" v={g.backend} />
        {g.device && <Param k="Device" v={g.device} />}
        {g.timings.total_ms != null && <Param k="Time" v={`${(g.timings.total_ms / 1000).toFixed(2)} s`} />}
        <Param k="Created" v={new Date(g.createdAt).toLocaleString()} />
      </dl>
    </aside>
  );
}

export function GalleryPage() {
  const items = useStore((s) => s.items);
  const total = useStore((s) => s.total);
  const query = useStore((s) => s.query);
  const selectedId = useStore((s) => s.selectedId);
  const loading = useStore((s) => s.loading);
  const selected = items.find((g) => g.id === selectedId) ?? null;
  const sentinel = useRef<HTMLDivElement>(null);
  const [text, setText] = useState(query);

  useEffect(() => {
    const t = setTimeout(() => {
      if (text !== useStore.getState().query) useStore.getState().setQuery(text);
    }, 200);
    return () => clearTimeout(t);
  }, [text]);

  useEffect(() => {
    const el = sentinel.current;
    if (!el) return;
    const io = new IntersectionObserver((entries) => entries[0]?.isIntersecting && void useStore.getState().loadMore());
    io.observe(el);
    return () => io.disconnect();
  }, []);

  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      if ((e.target as HTMLElement)?.closest('input, textarea, select')) return;
      const s = useStore.getState();
      const i = s.items.findIndex((g) => g.id === s.selectedId);
      if (e.key === 'ArrowRight' || e.key === 'ArrowDown') s.select(s.items[Math.min(s.items.length - 1, i + 1)]?.id ?? null);
      else if (e.key === 'ArrowLeft' || e.key === 'ArrowUp') s.select(s.items[Math.max(0, i - 1)]?.id ?? null);
      else if (e.key === 'Escape') s.select(null);
      else if (e.key.toLowerCase() === 'r' && i >= 0) s.restoreFrom(s.items[i]);
      else return;
      e.preventDefault();
    };
    window.addEventListener('keydown', onKey);
    return () => window.removeEventListener('keydown', onKey);
  }, []);

  return (
    <div className="gallery-page">
      <section className="gallery" aria-label="Gallery">
        <header className="gallery-header">
          <input type="search" name="search" placeholder="Search prompts…" aria-label="Search prompts" value={text} onChange={(e) => setText(e.target.value)} />
          <span className="muted" data-testid="gallery-count">
            {total} {total === 1 ? 'generation' : 'generations'}
          </span>
        </header>
        {items.length === 0 && !loading && (
          <div className="stage-hint">
            <h2>{query ? 'No matches' : 'Your history is empty'}</h2>
            <p className="muted">{query ? `No prompt contains “${query}”.` : 'Every image you generate lands here with its seed and settings.'}</p>
          </div>
        )}
        <div className="grid" role="list">
          {items.map((g) => (
            <button
              type="button"
              role="listitem"
              key={g.id}
              className={`tile${g.id === selectedId ? ' selected' : ''}`}
              onClick={() => useStore.getState().select(g.id)}
              onDoubleClick={() => useStore.getState().restoreFrom(g)}
              title={g.prompt}
            >
              {g.images[0] && <img src={client.fileUrl(g.images[0].path)} alt={g.prompt} loading="lazy" decoding="async" />}
              {g.images.length > 1 && <span className="badge">{g.images.length}</span>}
            </button>
          ))}
        </div>
        <div ref={sentinel} className="sentinel" />
      </section>
      {selected && <Detail g={selected} />}
    </div>
  );
}
