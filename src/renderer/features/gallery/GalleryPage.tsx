import { memo, useCallback, useEffect, useLayoutEffect, useMemo, useRef, useState } from 'react';
import type { Board, Generation } from '../../../shared/contract';
import { useStore } from '../../app/store';
import { client } from '../../lib/client';
import { downloadBlob, downloadText } from '../../lib/download';
import { ConfirmDialog, Dialog } from '../training/Dialog';
import { canvasRecord, formatCount, gridLayout, moveFocus, selectionJson, sheetLayout, visibleRange, type DateRange, type GridLayout } from './recall';
import { filtersActive, NO_FILTERS } from './slice';

/** A small version of a library image (the server caches a 256 px copy; without it the full image comes). */
export const thumbUrl = (path: string) => `${client.fileUrl(path)}?w=256`;

const fmt = (n: number) => n.toLocaleString('en-US');
const plural = (n: number, one: string, many = `${one}s`) => `${fmt(n)} ${n === 1 ? one : many}`;

// ------------------------------------------------------------------ menus

/** A button with a dropdown of actions; closes on a pick, a click outside or Escape. */
function Menu({ label, title, children, className, align = 'left' }: { label: React.ReactNode; title?: string; className?: string; align?: 'left' | 'right'; children: (close: () => void) => React.ReactNode }) {
  const [open, setOpen] = useState(false);
  const ref = useRef<HTMLDivElement>(null);
  useEffect(() => {
    if (!open) return;
    const down = (e: MouseEvent) => !ref.current?.contains(e.target as Node) && setOpen(false);
    const key = (e: KeyboardEvent) => {
      if (e.key === 'Escape') {
        e.stopImmediatePropagation();
        setOpen(false);
      }
    };
    window.addEventListener('mousedown', down);
    window.addEventListener('keydown', key, true);
    ref.current?.querySelector<HTMLElement>('[role="menuitem"]')?.focus();
    return () => {
      window.removeEventListener('mousedown', down);
      window.removeEventListener('keydown', key, true);
    };
  }, [open]);
  return (
    <div className="menu-wrap" ref={ref}>
      <button type="button" className={className} aria-haspopup="menu" aria-expanded={open} title={title} onClick={() => setOpen(!open)}>
        {label} <span aria-hidden>▾</span>
      </button>
      {open && (
        <div className={`menu ${align}`} role="menu">
          {children(() => setOpen(false))}
        </div>
      )}
    </div>
  );
}

function MenuItem({ onPick, children, disabled }: { onPick: () => void; children: React.ReactNode; disabled?: boolean }) {
  return (
    <button type="button" role="menuitem" disabled={disabled} onClick={onPick}>
      {children}
    </button>
  );
}

/** A one-field dialog: a name, a folder, a number. */
function AskDialog({ title, label, initial = '', type = 'text', confirm, hint, onSubmit, onClose }: { title: string; label: string; initial?: string; type?: 'text' | 'number'; confirm: string; hint?: string; onSubmit: (v: string) => Promise<boolean | void> | boolean | void; onClose: () => void }) {
  const [value, setValue] = useState(initial);
  const [busy, setBusy] = useState(false);
  return (
    <Dialog title={title} onClose={onClose}>
      <form
        onSubmit={async (e) => {
          e.preventDefault();
          if (!value.trim()) return;
          setBusy(true);
          try {
            if ((await onSubmit(value.trim())) !== false) onClose();
          } finally {
            setBusy(false);
          }
        }}
      >
        <label className="field">
          <span className="field-label">{label}</span>
          <input name="ask" type={type} autoFocus value={value} min={type === 'number' ? 1 : undefined} max={type === 'number' ? 100 : undefined} onChange={(e) => setValue(e.target.value)} />
        </label>
        {hint && <p className="muted small">{hint}</p>}
        <div className="dialog-actions">
          <button type="button" onClick={onClose}>
            Cancel
          </button>
          <button type="submit" className="primary" disabled={busy || !value.trim()}>
            {confirm}
          </button>
        </div>
      </form>
    </Dialog>
  );
}

// ------------------------------------------------------------------ actions

async function exportOne(id: string, format: 'comfyui' | 'json' | 'a1111') {
  try {
    const r = await client.call('history.export', { id, format });
    downloadText(r.text, r.filename, r.mime);
  } catch (err) {
    useStore.getState().toast('error', (err as Error).message);
  }
}

function exportSelection(gens: Generation[]) {
  const day = new Date().toISOString().slice(0, 10);
  downloadText(selectionJson(gens), `atelier-selection-${day}-${gens.length}.json`);
}

function loadImg(src: string): Promise<HTMLImageElement> {
  return new Promise((resolve, reject) => {
    const im = new Image();
    im.onload = () => resolve(im);
    im.onerror = () => reject(new Error(`Could not load ${src}.`));
    im.src = src;
  });
}

/** A batch as one PNG: its images side by side in a near-square grid. */
async function saveGrid(g: Generation) {
  try {
    const imgs = await Promise.all(g.images.map((im) => loadImg(client.fileUrl(im.path))));
    const w = Math.max(...imgs.map((i) => i.naturalWidth));
    const h = Math.max(...imgs.map((i) => i.naturalHeight));
    const sheet = sheetLayout(imgs.length, w, h);
    const c = document.createElement('canvas');
    c.width = sheet.width;
    c.height = sheet.height;
    const ctx = c.getContext('2d')!;
    imgs.forEach((im, i) => ctx.drawImage(im, sheet.at[i].x, sheet.at[i].y, w, h));
    const blob = await new Promise<Blob | null>((r) => c.toBlob(r, 'image/png'));
    if (!blob) throw new Error('The browser could not encode the grid.');
    downloadBlob(blob, `atelier-grid-${g.createdAt.slice(0, 10)}-${g.seed}.png`);
  } catch (err) {
    useStore.getState().toast('error', (err as Error).message);
  }
}

function selectedGenerations(): Generation[] {
  const s = useStore.getState();
  return s.items.filter((g): g is Generation => !!g && s.selected.has(g.id));
}

/** "Add to board" items: every board, then a new one. */
function BoardMenuItems({ ids, close, onNew }: { ids: () => string[]; close: () => void; onNew: () => void }) {
  const boards = useStore((s) => s.boards);
  return (
    <>
      {boards.map((b) => (
        <MenuItem
          key={b.id}
          onPick={() => {
            close();
            void useStore.getState().addToBoard(b.id, ids());
          }}
        >
          {b.name} <span className="muted">{fmt(b.count)}</span>
        </MenuItem>
      ))}
      <MenuItem
        onPick={() => {
          close();
          onNew();
        }}
      >
        New board…
      </MenuItem>
    </>
  );
}

// ------------------------------------------------------------------ detail

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
  const rec = canvasRecord(g);
  if (!rec) return null;
  const parts: React.ReactNode[] = [];
  if (rec.canvas) {
    const f = rec.canvas.frame;
    parts.push(`frame ${f.width}×${f.height} at ${f.x},${f.y}`);
    parts.push(
      <a key="i" href={client.fileUrl(rec.canvas.init)} target="_blank" rel="noreferrer">
        composite
      </a>,
    );
    if (rec.canvas.mask)
      parts.push(
        <a key="m" href={client.fileUrl(rec.canvas.mask)} target="_blank" rel="noreferrer">
          mask
        </a>,
      );
    if (rec.canvas.maskOnly) parts.push('mask only');
  }
  if (rec.control) parts.push(`canny control × ${rec.control.scale}`);
  return parts.map((p, i) => (
    <span key={i}>
      {i > 0 && ' · '}
      {p}
    </span>
  ));
}

const TIMING_LABEL: Record<string, string> = { total_ms: 'total', load_ms: 'load', queue_ms: 'queue', encode_ms: 'encode', sample_ms: 'sampling', decode_ms: 'decode' };
function timings(t: Record<string, number>): string | null {
  const keys = Object.keys(t).filter((k) => Number.isFinite(t[k]));
  if (!keys.length) return null;
  keys.sort((a, b) => (a === 'total_ms' ? -1 : b === 'total_ms' ? 1 : a.localeCompare(b)));
  return keys.map((k) => `${TIMING_LABEL[k] ?? k.replace(/_ms$|_s$/, '').replace(/_/g, ' ')} ${k.endsWith('_ms') ? (t[k] / 1000).toFixed(2) : t[k].toFixed(2)} s`).join(' · ');
}

function Detail({ g }: { g: Generation }) {
  const expanded = useStore((s) => s.detailOpen);
  const others = useStore((s) => s.selected.size - 1);
  const boardId = useStore((s) => s.filters.boardId);
  const [index, setIndex] = useState(0);
  const [dialog, setDialog] = useState<null | 'delete' | 'variations' | 'board'>(null);
  const img = g.images[index] ?? g.images[0];
  const rec = canvasRecord(g);
  const s = useStore.getState;
  const t = timings(g.timings);
  return (
    <aside className={`detail${expanded ? ' expanded' : ''}`} aria-label="Image details">
      <div className="detail-head">
        <button type="button" className={`star-toggle${g.favorite ? ' on' : ''}`} aria-pressed={g.favorite} aria-label="Favorite" title={g.favorite ? 'Remove from favorites (F)' : 'Add to favorites (F)'} onClick={() => s().setFavorite([g.id], !g.favorite)}>
          {g.favorite ? '★' : '☆'}
        </button>
        <span className="detail-title" title={g.prompt}>
          {g.prompt}
        </span>
        <button type="button" className="icon small" aria-label={expanded ? 'Smaller view' : 'Larger view'} title={expanded ? 'Back to the grid (Esc)' : 'Large view (Enter)'} onClick={() => s().openDetail(!expanded)}>
          {expanded ? '⤡' : '⤢'}
        </button>
        <button type="button" className="icon small" aria-label="Close details" title="Close (Esc)" onClick={() => s().clearSelection()}>
          ✕
        </button>
      </div>
      {others > 0 && (
        <p className="detail-multi muted small">
          One of {others + 1} selected: the bar above acts on all of them, these buttons on this one.
        </p>
      )}
      <div className="detail-media">
        {img && (
          <img
            className="detail-image"
            src={client.fileUrl(img.path)}
            alt={`Seed ${img.seed}`}
            data-testid="detail-image"
            onDoubleClick={() => s().openDetail(!expanded)}
          />
        )}
        {g.images.length > 1 && (
          <div className="detail-thumbs" role="group" aria-label="Images of this batch">
            {g.images.map((im, i) => (
              <button key={im.id} type="button" className={`detail-thumb${i === index ? ' active' : ''}`} aria-pressed={i === index} aria-label={`Image ${i + 1}, seed ${im.seed}`} onClick={() => setIndex(i)}>
                <img src={thumbUrl(im.path)} alt="" loading="lazy" decoding="async" />
              </button>
            ))}
          </div>
        )}
      </div>
      <div className="detail-side">
        <div className="detail-actions">
          <button type="button" className="primary" onClick={() => s().restoreFrom(g, index)} title="Every setting of this image into the generate form (R)">
            Use these settings
          </button>
          {/* A cloud image has no seed to keep or step from. */}
          {g.backend === 'local' && (
            <>
              <button
                type="button"
                onClick={() => s().sameSeedNewPrompt(g, index)}
                title="The same settings and seed, with the prompt ready to be rewritten"
              >
                Same seed, new prompt
              </button>
              <button type="button" onClick={() => setDialog('variations')} title="Queue the same settings with the next seeds">
                Variations…
              </button>
            </>
          )}
          {rec && (
            <button type="button" onClick={() => s().openInCanvas(g, index)} title="Restore the frame, canvas and control inputs into the canvas">
              Open in canvas
            </button>
          )}
          {img && (
            <button type="button" onClick={() => s().useAsInit(img.id, img.path)}>
              Use as starting image
            </button>
          )}
          {img && (
            <button type="button" onClick={() => s().sendToCanvas(img.path, img.width, img.height, `seed ${img.seed}`)}>
              Send to canvas
            </button>
          )}
          <Menu label="Export" title="Save this entry's settings in another tool's format">
            {(close) => (
              <>
                <MenuItem
                  onPick={() => {
                    close();
                    void exportOne(g.id, 'comfyui');
                  }}
                >
                  ComfyUI workflow (API JSON)
                </MenuItem>
                <MenuItem
                  onPick={() => {
                    close();
                    void exportOne(g.id, 'a1111');
                  }}
                >
                  A1111 parameters (text)
                </MenuItem>
                <MenuItem
                  onPick={() => {
                    close();
                    void exportOne(g.id, 'json');
                  }}
                >
                  Atelier JSON
                </MenuItem>
              </>
            )}
          </Menu>
          {g.images.length > 1 && (
            <button type="button" onClick={() => void saveGrid(g)} title="All images of this batch in one PNG">
              Save grid
            </button>
          )}
          <Menu label="Add to board">{(close) => <BoardMenuItems ids={() => [g.id]} close={close} onNew={() => setDialog('board')} />}</Menu>
          {boardId && (
            <button type="button" onClick={() => s().removeFromBoard(boardId, [g.id])}>
              Remove from board
            </button>
          )}
          <button type="button" className="danger" onClick={() => setDialog('delete')}>
            Delete
          </button>
        </div>
        <dl className="params">
          <Param k="Prompt" v={<span className="prompt-text">{g.prompt}</span>} />
          {g.negativePrompt && <Param k="Negative" v={<span className="prompt-text">{g.negativePrompt}</span>} />}
          <Param k="Model" v={<span>{g.modelName}{g.modelHash && <code className="hash"> {g.modelHash.slice(0, 10)}</code>}{!g.modelId && <span className="field-error"> · not in the library</span>}</span>} />
          {g.loras.length > 0 && (
            <Param
              k="LoRAs"
              v={
                <span data-testid="detail-loras">
                  {g.loras.map((l, i) => (
                    <span key={i} title={l.hash ? `hash ${l.hash}` : undefined}>
                      {i > 0 && ', '}
                      {l.name} × {Number(l.weight.toFixed(2))}
                      {l.hash && <code className="hash"> {l.hash.slice(0, 10)}</code>}
                    </span>
                  ))}
                </span>
              }
            />
          )}
          {g.revisedPrompt && <Param k="Revised by the model" v={<span className="prompt-text" data-testid="detail-revised">{g.revisedPrompt}</span>} />}
          <Param k="Mode" v={g.mode} />
          {g.backend === 'local' ? (
            <>
              <Param k="Sampler" v={g.sampler} />
              <Param k="Steps" v={g.steps} />
              <Param k="CFG" v={g.cfg} />
              <Param k="Seed" v={<span data-testid="detail-seed">{g.images.length > 1 ? g.images.map((i, k) => (k === index ? `[${i.seed}]` : i.seed)).join(', ') : (img?.seed ?? g.seed)}</span>} />
            </>
          ) : (
            g.cloud && <Param k="Options" v={[g.cloud.quality && `quality ${g.cloud.quality}`, g.cloud.style && `style ${g.cloud.style}`].filter(Boolean).join(' · ') || '—'} />
          )}
          <Param k="Size" v={`${g.width} × ${g.height}${g.images.length > 1 ? ` · batch of ${g.images.length}` : ''}`} />
          {g.strength != null && <Param k="Strength" v={g.strength} />}
          {canvasInputs(g) && <Param k="Canvas" v={canvasInputs(g)} />}
          <Param k="Backend" v={g.backend === 'cloud' ? 'cloud · OpenAI' : 'local'} />
          {g.device && <Param k="Device" v={g.device} />}
          {t && <Param k="Time" v={t} />}
          {g.costUsd != null && <Param k="Cost" v={<span data-testid="detail-cost">{`$${g.costUsd.toFixed(3)}`}</span>} />}
          <Param k="Created" v={new Date(g.createdAt).toLocaleString()} />
        </dl>
      </div>
      {dialog === 'delete' && (
        <ConfirmDialog
          title="Delete this generation?"
          text={<p>{g.images.length > 1 ? `Its ${g.images.length} images are` : 'Its image is'} removed from the library and the disk. This cannot be undone.</p>}
          confirm="Delete"
          onConfirm={() => s().deleteGenerations([g.id])}
          onClose={() => setDialog(null)}
        />
      )}
      {dialog === 'variations' && (
        <AskDialog
          title="Variations"
          label="How many? (seeds follow this image's seed)"
          type="number"
          initial="4"
          confirm="Queue"
          hint={`Seeds ${(img?.seed ?? g.seed) + 1} and up, every other setting the same.`}
          onSubmit={(v) => {
            const n = Math.round(Number(v));
            if (!Number.isFinite(n) || n < 1 || n > 100) {
              s().toast('error', 'Between 1 and 100 variations.');
              return false;
            }
            return s().queueVariations(g, index, n);
          }}
          onClose={() => setDialog(null)}
        />
      )}
      {dialog === 'board' && (
        <AskDialog
          title="New board"
          label="Name"
          confirm="Create and add"
          onSubmit={async (name) => {
            const b = await s().createBoard(name);
            if (!b) return false;
            await s().addToBoard(b.id, [g.id]);
          }}
          onClose={() => setDialog(null)}
        />
      )}
    </aside>
  );
}

// ------------------------------------------------------------------ boards

function BoardRow({ b, active }: { b: Board; active: boolean }) {
  const [mode, setMode] = useState<null | 'rename' | 'delete' | 'export'>(null);
  const s = useStore.getState;
  return (
    <div className={`board-row${active ? ' active' : ''}`}>
      <button type="button" className="board-main" aria-current={active ? 'true' : undefined} onClick={() => s().setFilters({ boardId: active ? '' : b.id })} title={active ? 'Show all generations' : `Show “${b.name}”`}>
        <span className="board-cover" aria-hidden>
          {b.cover ? <img src={thumbUrl(b.cover)} alt="" loading="lazy" decoding="async" /> : '▦'}
        </span>
        <span className="board-name">{b.name}</span>
        <span className="board-count">{fmt(b.count)}</span>
      </button>
      <span className="board-actions">
        <button type="button" className="icon small" aria-label={`Rename ${b.name}`} title="Rename" onClick={() => setMode('rename')}>
          ✎
        </button>
        <button type="button" className="icon small" aria-label={`Export ${b.name}`} title="Export board…" onClick={() => setMode('export')}>
          ⤓
        </button>
        <button type="button" className="icon small" aria-label={`Delete ${b.name}`} title="Delete board" onClick={() => setMode('delete')}>
          ✕
        </button>
      </span>
      {mode === 'rename' && <AskDialog title="Rename board" label="Name" initial={b.name} confirm="Rename" onSubmit={(name) => s().renameBoard(b.id, name)} onClose={() => setMode(null)} />}
      {mode === 'export' && (
        <AskDialog
          title={`Export “${b.name}”`}
          label="Folder"
          confirm="Export"
          hint="A folder on this machine (it is created if missing): the images with their metadata go into a sub-folder named after the board, with board.json beside them."
          onSubmit={(folder) => s().exportBoard(b.id, folder)}
          onClose={() => setMode(null)}
        />
      )}
      {mode === 'delete' && (
        <ConfirmDialog
          title={`Delete the board “${b.name}”?`}
          text={<p>The board goes; its {plural(b.count, 'generation')} stay in the history.</p>}
          confirm="Delete board"
          onConfirm={() => s().deleteBoard(b.id)}
          onClose={() => setMode(null)}
        />
      )}
    </div>
  );
}

function BoardsSidebar() {
  const boards = useStore((s) => s.boards);
  const boardId = useStore((s) => s.filters.boardId);
  const favorite = useStore((s) => s.filters.favorite);
  const [creating, setCreating] = useState(false);
  const s = useStore.getState;
  return (
    <nav className="boards" aria-label="Boards">
      <button type="button" className={`board-main all${!boardId && !favorite ? ' active' : ''}`} onClick={() => s().setFilters({ boardId: '', favorite: false })}>
        <span className="board-cover" aria-hidden>
          ▦
        </span>
        <span className="board-name">All generations</span>
      </button>
      <button type="button" className={`board-main all${favorite ? ' active' : ''}`} onClick={() => s().setFilters({ favorite: !favorite })} aria-pressed={favorite}>
        <span className="board-cover star" aria-hidden>
          ★
        </span>
        <span className="board-name">Favorites</span>
      </button>
      <div className="boards-head">
        <h3>Boards</h3>
        <button type="button" className="icon small" aria-label="New board" title="New board" onClick={() => setCreating(true)}>
          +
        </button>
      </div>
      {boards.length === 0 && <p className="muted small boards-empty">Collect generations in boards: select some, then “Add to board”.</p>}
      {boards.map((b) => (
        <BoardRow key={b.id} b={b} active={b.id === boardId} />
      ))}
      {creating && <AskDialog title="New board" label="Name" confirm="Create" onSubmit={async (name) => !!(await s().createBoard(name))} onClose={() => setCreating(false)} />}
    </nav>
  );
}

// ------------------------------------------------------------------ toolbar

const RANGES: { value: DateRange; label: string }[] = [
  { value: 'all', label: 'Any time' },
  { value: 'today', label: 'Today' },
  { value: '7d', label: 'Last 7 days' },
  { value: '30d', label: 'Last 30 days' },
  { value: 'custom', label: 'Between…' },
];

function Toolbar() {
  const f = useStore((s) => s.filters);
  const facets = useStore((s) => s.facets);
  const total = useStore((s) => s.total);
  const capped = useStore((s) => s.totalCapped);
  const counting = useStore((s) => s.counting);
  const loading = useStore((s) => s.galleryLoading);
  const [text, setText] = useState(f.query);
  const set = useStore.getState().setFilters;

  useEffect(() => setText(f.query), [f.query]);
  useEffect(() => {
    const t = setTimeout(() => {
      if (text !== useStore.getState().filters.query) set({ query: text });
    }, 200);
    return () => clearTimeout(t);
  }, [text, set]);

  return (
    <header className="gallery-toolbar">
      <div className="gallery-search-row">
        <input type="search" name="search" placeholder="Search prompts, models, LoRAs…" aria-label="Search prompts" value={text} onChange={(e) => setText(e.target.value)} />
        <span className={`gallery-count${loading ? ' loading' : ''}`} data-testid="gallery-count" aria-live="polite">
          {counting ? 'Counting…' : formatCount(total, capped)}
        </span>
      </div>
      <div className="filters" role="group" aria-label="Filters">
        <select name="filterModel" aria-label="Model" value={f.model} onChange={(e) => set({ model: e.target.value })}>
          <option value="">All models</option>
          {facets.models.map((m) => (
            <option key={m} value={m}>
              {m}
            </option>
          ))}
        </select>
        {(facets.loras.length > 0 || f.lora) && (
          <select name="filterLora" aria-label="LoRA" value={f.lora} onChange={(e) => set({ lora: e.target.value })}>
            <option value="">Any LoRA</option>
            {facets.loras.map((m) => (
              <option key={m} value={m}>
                {m}
              </option>
            ))}
          </select>
        )}
        <select name="filterSampler" aria-label="Sampler" value={f.sampler} onChange={(e) => set({ sampler: e.target.value })}>
          <option value="">All samplers</option>
          {facets.samplers.map((m) => (
            <option key={m} value={m}>
              {m}
            </option>
          ))}
        </select>
        <select name="filterDate" aria-label="Date" value={f.range} onChange={(e) => set({ range: e.target.value as DateRange })}>
          {RANGES.map((r) => (
            <option key={r.value} value={r.value}>
              {r.label}
            </option>
          ))}
        </select>
        {f.range === 'custom' && (
          <span className="date-range">
            <input type="date" name="filterFrom" aria-label="From date" value={f.fromDate} onChange={(e) => set({ fromDate: e.target.value })} />
            <span className="muted">to</span>
            <input type="date" name="filterTo" aria-label="To date" value={f.toDate} onChange={(e) => set({ toDate: e.target.value })} />
          </span>
        )}
        <select name="filterBackend" aria-label="Local or cloud" value={f.backend} onChange={(e) => set({ backend: e.target.value as '' | 'local' | 'cloud' })}>
          <option value="">Local and cloud</option>
          <option value="local">Local</option>
          <option value="cloud">Cloud</option>
        </select>
        <button type="button" className={`toggle${f.favorite ? ' active' : ''}`} aria-pressed={f.favorite} onClick={() => set({ favorite: !f.favorite })} title="Only favorites">
          ★ Favorites
        </button>
        {filtersActive(f) && (
          <button type="button" className="link" onClick={() => set({ ...NO_FILTERS })}>
            Clear filters
          </button>
        )}
      </div>
    </header>
  );
}

// ------------------------------------------------------------------ selection bar

function SelectionBar({ onDelete, onNewBoard }: { onDelete: () => void; onNewBoard: () => void }) {
  const selected = useStore((s) => s.selected);
  const boardId = useStore((s) => s.filters.boardId);
  const n = selected.size;
  if (n < 2) return null;
  const s = useStore.getState;
  const ids = () => [...s().selected];
  return (
    <div className="selection-bar" role="toolbar" aria-label="Selection">
      <strong data-testid="selection-count">{plural(n, 'selected', 'selected')}</strong>
      <button type="button" onClick={() => s().setFavorite(ids(), true)}>
        ★ Favorite
      </button>
      <button type="button" onClick={() => s().setFavorite(ids(), false)}>
        ☆ Unfavorite
      </button>
      <Menu label="Add to board">{(close) => <BoardMenuItems ids={ids} close={close} onNew={onNewBoard} />}</Menu>
      {boardId && (
        <button type="button" onClick={() => s().removeFromBoard(boardId, ids())}>
          Remove from board
        </button>
      )}
      <button type="button" onClick={() => exportSelection(selectedGenerations())} title="The parameters of the selected entries, as one JSON file">
        Export JSON
      </button>
      <button type="button" className="danger" onClick={onDelete} title="Delete (Del)">
        Delete…
      </button>
      <span className="spacer" />
      <button type="button" className="icon small" aria-label="Clear selection" title="Clear selection (Esc)" onClick={() => s().clearSelection()}>
        ✕
      </button>
    </div>
  );
}

// ------------------------------------------------------------------ the grid

function onCellClick(e: React.MouseEvent, id: string) {
  const s = useStore.getState();
  if (e.shiftKey) s.selectRangeTo(id);
  else if (e.ctrlKey || e.metaKey) s.toggleSelect(id);
  else s.selectOnly(id);
}

const Cell = memo(function Cell({ g, top, left, size, selected, tabbable }: { g: Generation; top: number; left: number; size: number; selected: boolean; tabbable: boolean }) {
  const img = g.images[0];
  return (
    <div role="listitem" className={`cell${selected ? ' selected' : ''}`} style={{ top, left, width: size, height: size }} data-id={g.id}>
      <button
        type="button"
        className="cell-image"
        tabIndex={tabbable ? 0 : -1}
        aria-pressed={selected}
        aria-label={`${g.prompt} (seed ${img?.seed ?? g.seed})`}
        title={g.prompt}
        onClick={(e) => onCellClick(e, g.id)}
        onDoubleClick={() => {
          useStore.getState().selectOnly(g.id);
          useStore.getState().openDetail(true);
        }}
      >
        {img ? <img src={thumbUrl(img.path)} alt="" loading="lazy" decoding="async" draggable={false} /> : <span className="cell-missing">no image</span>}
      </button>
      {g.images.length > 1 && <span className="badge">{g.images.length}</span>}
      <button
        type="button"
        className={`cell-star${g.favorite ? ' on' : ''}`}
        tabIndex={-1}
        aria-pressed={g.favorite}
        aria-label={g.favorite ? 'Unfavorite' : 'Favorite'}
        title={g.favorite ? 'Remove from favorites' : 'Add to favorites'}
        onClick={(e) => {
          e.stopPropagation();
          void useStore.getState().setFavorite([g.id], !g.favorite);
        }}
      >
        {g.favorite ? '★' : '☆'}
      </button>
    </div>
  );
});

function VirtualGrid({ layoutRef }: { layoutRef: React.MutableRefObject<GridLayout> }) {
  const items = useStore((s) => s.items);
  const selected = useStore((s) => s.selected);
  const focusId = useStore((s) => s.focusId);
  const resetSeq = useStore((s) => s.galleryResetSeq);
  const query = useStore((s) => s.filters.query);
  const loading = useStore((s) => s.galleryLoading);
  const ref = useRef<HTMLDivElement>(null);
  const [size, setSize] = useState({ w: 0, h: 0 });
  // Only the row under the top edge matters: scrolling within a row does not re-render.
  const [topRow, setTopRow] = useState(0);
  const PAD = 12;
  const layout = useMemo(() => gridLayout(size.w - PAD * 2), [size.w]);
  layoutRef.current = layout;
  const range = useMemo(() => visibleRange(topRow * layout.pitch, size.h + layout.pitch, layout, items.length), [topRow, size.h, layout, items.length]);
  const rows = Math.ceil(items.length / layout.cols);

  useLayoutEffect(() => {
    const el = ref.current!;
    const ro = new ResizeObserver(() => setSize({ w: el.clientWidth, h: el.clientHeight }));
    ro.observe(el);
    setSize({ w: el.clientWidth, h: el.clientHeight });
    return () => ro.disconnect();
  }, []);

  useEffect(() => {
    if (ref.current) ref.current.scrollTop = 0;
    setTopRow(0);
  }, [resetSeq]);
  useEffect(() => {
    if (ref.current) setTopRow(Math.floor(ref.current.scrollTop / layout.pitch));
  }, [layout]);

  // Fetch the pages under the viewport, and a screenful ahead.
  useEffect(() => {
    if (!size.h) return;
    const ahead = (range.end - range.start) * 1;
    useStore.getState().ensureRange(Math.max(0, range.start - layout.cols), range.end + ahead);
  }, [range.start, range.end, items, size.h, layout.cols]);

  // Keyboard focus: keep the focused cell in view and give it the DOM focus.
  useEffect(() => {
    const el = ref.current;
    if (!el || !focusId) return;
    const i = useStore.getState().items.findIndex((g) => g?.id === focusId);
    if (i < 0) return;
    const top = Math.floor(i / layout.cols) * layout.pitch + PAD;
    if (top < el.scrollTop) el.scrollTop = top - PAD;
    else if (top + layout.cell > el.scrollTop + el.clientHeight) el.scrollTop = top + layout.cell - el.clientHeight + PAD;
    requestAnimationFrame(() => {
      const active = document.activeElement;
      if (active && active !== document.body && !el.contains(active)) return; // typing in the search box, a dialog…
      el.querySelector<HTMLElement>(`[data-id="${CSS.escape(focusId)}"] .cell-image`)?.focus({ preventScroll: true });
    });
  }, [focusId, layout]);

  const cells: React.ReactNode[] = [];
  const focusVisible = focusId != null && items.slice(range.start, range.end).some((g) => g?.id === focusId);
  for (let i = range.start; i < range.end; i++) {
    const g = items[i];
    const top = Math.floor(i / layout.cols) * layout.pitch + PAD;
    const left = (i % layout.cols) * layout.pitch + PAD;
    if (!g) {
      cells.push(<div key={`hole-${i}`} className="cell placeholder" style={{ top, left, width: layout.cell, height: layout.cell }} aria-hidden />);
      continue;
    }
    cells.push(<Cell key={g.id} g={g} top={top} left={left} size={layout.cell} selected={selected.has(g.id)} tabbable={focusVisible ? g.id === focusId : i === range.start} />);
  }

  return (
    <div
      ref={ref}
      className="vgrid"
      role="list"
      aria-label="Generations"
      aria-multiselectable="true"
      data-testid="gallery-grid"
      data-query={query}
      aria-busy={loading}
      onScroll={(e) => setTopRow(Math.floor(e.currentTarget.scrollTop / layout.pitch))}
    >
      <div className="vgrid-sizer" style={{ height: rows * layout.pitch + PAD * 2 - (rows ? layout.gap : 0) }}>
        {cells}
      </div>
    </div>
  );
}

// ------------------------------------------------------------------ the page

function EmptyState() {
  const loading = useStore((s) => s.galleryLoading);
  const count = useStore((s) => s.items.length);
  const f = useStore((s) => s.filters);
  const boards = useStore((s) => s.boards);
  if (loading || count > 0) return null;
  const board = boards.find((b) => b.id === f.boardId);
  const filtered = filtersActive(f);
  return (
    <div className="stage-hint gallery-empty">
      <h2>{board && !f.query && !f.model && !f.favorite ? `“${board.name}” is empty` : filtered ? 'No matches' : 'Your history is empty'}</h2>
      <p className="muted">
        {f.query.trim()
          ? `Nothing matches “${f.query.trim()}” with these filters.`
          : board
            ? 'Select generations and use “Add to board”.'
            : filtered
              ? 'No generation matches these filters.'
              : 'Every image you generate lands here with its seed and settings.'}
      </p>
    </div>
  );
}

export function GalleryPage() {
  const items = useStore((s) => s.items);
  const selected = useStore((s) => s.selected);
  const focusId = useStore((s) => s.focusId);
  const layoutRef = useRef<GridLayout>(gridLayout(800));
  const [confirmDelete, setConfirmDelete] = useState<string[] | null>(null);
  const [newBoard, setNewBoard] = useState(false);
  // The detail shows the focused (last clicked) entry of the selection, so adding to a selection does not reflow the grid.
  const detail = useMemo(() => {
    if (!selected.size) return null;
    const id = focusId && selected.has(focusId) ? focusId : null;
    return (id ? items.find((g) => g?.id === id) : undefined) ?? items.find((g) => !!g && selected.has(g.id)) ?? null;
  }, [items, selected, focusId]);

  useEffect(() => {
    const s = useStore.getState();
    void s.loadFacets();
    void s.loadBoards();
  }, []);

  const askDelete = useCallback(() => {
    const ids = [...useStore.getState().selected];
    if (ids.length) setConfirmDelete(ids);
  }, []);

  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      const t = e.target as HTMLElement | null;
      if (t?.closest?.('input, textarea, select, [role="dialog"], [role="menu"]')) return;
      if (document.querySelector('[role="dialog"]')) return;
      const s = useStore.getState();
      const mod = e.ctrlKey || e.metaKey;
      const cols = layoutRef.current.cols;
      const focusIndex = s.focusId ? s.items.findIndex((g) => g?.id === s.focusId) : -1;
      if (['ArrowLeft', 'ArrowRight', 'ArrowUp', 'ArrowDown', 'Home', 'End', 'PageUp', 'PageDown'].includes(e.key) && !e.altKey) {
        if (s.detailOpen && (e.key === 'ArrowUp' || e.key === 'ArrowDown')) return;
        const i = moveFocus(focusIndex, e.key, s.detailOpen ? 1 : cols, s.items.length);
        const g = s.items[i];
        if (!g) return;
        e.preventDefault();
        if (e.shiftKey) s.selectRangeTo(g.id);
        else if (mod) s.setFocus(g.id);
        else s.selectOnly(g.id);
        return;
      }
      if (mod && e.key.toLowerCase() === 'a') {
        e.preventDefault();
        s.selectAllLoaded();
      } else if (e.key === 'Escape') {
        if (s.detailOpen) s.openDetail(false);
        else if (s.selected.size) s.clearSelection();
        else return;
        e.preventDefault();
      } else if (e.key === 'Enter' && !mod) {
        if (!s.focusId) return;
        // Enter on a cell opens it; on another button it presses that button.
        if (t && t.tagName === 'BUTTON' && !t.classList.contains('cell-image')) return;
        e.preventDefault();
        const alone = s.selected.size === 1 && s.selected.has(s.focusId);
        if (!alone) s.selectOnly(s.focusId);
        s.openDetail(!(alone && s.detailOpen));
      } else if (e.key === 'Delete' || (e.key === 'Backspace' && mod)) {
        if (!s.selected.size) return;
        e.preventDefault();
        askDelete();
      } else if (!mod && !e.altKey && e.key.toLowerCase() === 'f' && s.selected.size) {
        e.preventDefault();
        const gens = selectedGenerations();
        void s.setFavorite(
          gens.map((g) => g.id),
          !gens.every((g) => g.favorite),
        );
      } else if (!mod && !e.altKey && e.key.toLowerCase() === 'r' && s.selected.size === 1) {
        const g = selectedGenerations()[0];
        if (g) s.restoreFrom(g);
      }
    };
    window.addEventListener('keydown', onKey);
    return () => window.removeEventListener('keydown', onKey);
  }, [askDelete]);

  return (
    <div className={`gallery-page${detail ? ' with-detail' : ''}`}>
      <BoardsSidebar />
      <section className="gallery" aria-label="Gallery">
        <Toolbar />
        <SelectionBar onDelete={askDelete} onNewBoard={() => setNewBoard(true)} />
        <div className="gallery-body">
          <VirtualGrid layoutRef={layoutRef} />
          <EmptyState />
        </div>
      </section>
      {detail && <Detail key={detail.id} g={detail} />}
      {confirmDelete && (
        <ConfirmDialog
          title={confirmDelete.length === 1 ? 'Delete this generation?' : `Delete ${fmt(confirmDelete.length)} generations?`}
          text={<p>{confirmDelete.length === 1 ? 'Its images are' : 'Their images are'} removed from the library and the disk. This cannot be undone.</p>}
          confirm={confirmDelete.length === 1 ? 'Delete' : `Delete ${fmt(confirmDelete.length)}`}
          onConfirm={() => useStore.getState().deleteGenerations(confirmDelete)}
          onClose={() => setConfirmDelete(null)}
        />
      )}
      {newBoard && (
        <AskDialog
          title="New board"
          label="Name"
          confirm="Create and add"
          onSubmit={async (name) => {
            const s = useStore.getState();
            const b = await s.createBoard(name);
            if (!b) return false;
            await s.addToBoard(b.id, [...s.selected]);
          }}
          onClose={() => setNewBoard(false)}
        />
      )}
    </div>
  );
}
