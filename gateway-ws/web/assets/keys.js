// API keys: create (the key is shown once), list and revoke the signed-in
// user's keys, for their app's backend. A key acts as its owner within its
// scopes (publish, manage, read). Server data goes in with textContent only.
const $ = (sel, root = document) => root.querySelector(sel);

// initKeys wires the API keys card; call and flash are app.js's.
export function initKeys({ call, flash }) {
  async function load() {
    const { api_keys } = await call("GET", "list-api-keys");
    const list = $("#api-keys");
    list.replaceChildren(
      ...api_keys.map((k) => {
        const li = $("#api-key-template").content.firstElementChild.cloneNode(true);
        $(".k-name", li).textContent = k.name;
        $(".k-scopes", li).textContent = k.scopes.join(", ");
        $(".k-used", li).textContent = k.last_used_at ? `used ${new Date(k.last_used_at).toLocaleString()}` : "never used";
        const revoke = $(".k-revoke", li);
        if (k.revoked_at) {
          $(".k-revoked", li).hidden = false;
          revoke.hidden = true;
        }
        revoke.addEventListener("click", async () => {
          revoke.disabled = true;
          try {
            await call("POST", "revoke-api-key", { body: { id: k.id } });
            flash(`Key ${k.name} revoked.`);
            await load();
          } catch (err) {
            revoke.disabled = false;
            flash(err.message, "error");
          }
        });
        return li;
      }),
    );
    $("#no-api-keys").hidden = api_keys.length > 0;
  }

  $("#api-key-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const form = e.target;
    const data = new FormData(form);
    const scopes = data.getAll("scopes");
    try {
      const { key } = await call("POST", "create-api-key", { body: { name: String(data.get("name")).trim(), scopes } });
      form.reset();
      $("#new-api-key").textContent = key;
      $("#new-api-key-box").hidden = false;
      await load();
    } catch (err) {
      flash(err.message, "error");
    }
  });
  $("#hide-api-key").addEventListener("click", () => {
    $("#new-api-key").textContent = "";
    $("#new-api-key-box").hidden = true;
  });

  return {
    load,
    // reset forgets what the last user saw (the key shown once above all).
    reset() {
      $("#api-keys").replaceChildren();
      $("#new-api-key").textContent = "";
      $("#new-api-key-box").hidden = true;
    },
  };
}
