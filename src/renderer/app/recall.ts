/**
 * Drop a PNG anywhere on the app (or open one): its generation settings
 * (Atelier, A1111 or ComfyUI metadata, read by `history.readMetadata`) go
 * into the generate form. The canvas and the dataset view are drop targets
 * of their own: a drop they take (preventDefault) is left to them.
 */
import { useEffect, useState } from 'react';
import { MAX_ASSET_BASE64 } from '../../shared/contract';
import { client } from '../lib/client';
import { useStore } from './store';

function base64Of(file: File): Promise<string> {
  return new Promise((resolve, reject) => {
    const r = new FileReader();
    r.onload = () => resolve(String(r.result).replace(/^data:[^,]*,/, ''));
    r.onerror = () => reject(new Error(`Could not read ${file.name}.`));
    r.readAsDataURL(file);
  });
}

export async function readDroppedImage(file: File): Promise<void> {
  const s = useStore.getState();
  try {
    if (file.size * 1.34 > MAX_ASSET_BASE64) throw new Error(`${file.name} is too large (${Math.round(file.size / 1048576)} MB): settings are read from PNGs up to 48 MB.`);
    const png = await base64Of(file);
    // The server says what is wrong with a file that is not a PNG, or a damaged one.
    const meta = await client.call('history.readMetadata', { png: png.length >= 8 ? png : 'AAAAAAAA' });
    useStore.getState().applyMetadata(meta, file.name);
  } catch (err) {
    s.toast('error', `${file.name}: ${(err as Error).message}`);
  }
}

const hasFiles = (e: DragEvent) => !!e.dataTransfer && Array.from(e.dataTransfer.types).includes('Files');

/** Window-level drag and drop of image files; true while files are dragged over a place that takes them for recall. */
export function useWindowImageDrop(): boolean {
  const [over, setOver] = useState(false);
  useEffect(() => {
    let depth = 0;
    const enter = (e: DragEvent) => {
      if (!hasFiles(e)) return;
      depth++;
    };
    const overFn = (e: DragEvent) => {
      if (!hasFiles(e)) return;
      if (e.defaultPrevented) {
        // The canvas or a dataset takes this drop.
        setOver(false);
        return;
      }
      e.preventDefault();
      if (e.dataTransfer) e.dataTransfer.dropEffect = 'copy';
      setOver(true);
    };
    const leave = (e: DragEvent) => {
      if (!hasFiles(e)) return;
      depth = Math.max(0, depth - 1);
      if (!depth) setOver(false);
    };
    const drop = (e: DragEvent) => {
      depth = 0;
      setOver(false);
      if (!hasFiles(e) || e.defaultPrevented) return;
      e.preventDefault();
      const file = e.dataTransfer?.files?.[0];
      if (file) void readDroppedImage(file);
    };
    window.addEventListener('dragenter', enter);
    window.addEventListener('dragover', overFn);
    window.addEventListener('dragleave', leave);
    window.addEventListener('drop', drop);
    return () => {
      window.removeEventListener('dragenter', enter);
      window.removeEventListener('dragover', overFn);
      window.removeEventListener('dragleave', leave);
      window.removeEventListener('drop', drop);
    };
  }, []);
  return over;
}
