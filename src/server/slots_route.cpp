// POST /slots/{id}: saved conversations, as llama-server has them.
#include <chrono>
#include <filesystem>

#include "core/json_input.h"
#include "core/read_file.h"
#include "core/write_file.h"
#include "runtime/snapshot_file.h"
#include "server/replies.h"
#include "server/server_impl.h"

namespace dsv4 {

using json = nlohmann::ordered_json;

// POST /slots/{id}?action=save|restore|erase, as llama-server: a free slot's conversation
// (its tokens and cache: runtime/snapshot_file.h) saved to --slot-save-path/{filename},
// restored from there (checked: the same checkpoint and settings, sound bytes), or cleared.
// The next request that continues the conversation then prefills only what is new.
void OpenAIServer::Impl::slots(const httplib::Request& req, httplib::Response& res) {
  const std::string& id_text = req.matches[1];
  if (id_text.size() > 6) throw ApiError(400, "slot " + id_text + " does not exist");
  const int id = std::stoi(id_text);
  const std::string action = req.get_param_value("action");
  const auto t0 = std::chrono::steady_clock::now();
  const auto ms = [&] {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  };
  try {
    if (action == "erase") {
      const size_t n = scheduler.erase_slot(id);
      send_json(res, 200, {{"id_slot", id}, {"n_erased", n}});
      return;
    }
    if (action != "save" && action != "restore")
      throw ApiError(400, "action must be save, restore or erase, got '" + action + "'", "invalid_request_error",
                     "action");
    if (opt.slot_save_path.empty())
      throw ApiError(400, "saving and restoring slots needs dsv4 serve --slot-save-path DIR");
    json body;
    try {
      body = parse_json<json>(req.body);
    } catch (const std::exception& e) {
      throw ApiError(400, std::string("the body is not JSON: ") + e.what());
    }
    const std::string name = body.is_object() && body.contains("filename") && body["filename"].is_string()
                                 ? body["filename"].get<std::string>()
                                 : "";
    if (name.empty() || name.size() > 200 || name == "." || name == ".." ||
        name.find_first_of(std::string("/\\\0", 3)) != std::string::npos)
      throw ApiError(400, "filename must be a plain file name (no directories), up to 200 bytes",
                     "invalid_request_error", "filename");
    const std::string path = (std::filesystem::path(opt.slot_save_path) / name).string();
    if (action == "save") {
      const Snapshot snap = scheduler.save_slot(id);
      const std::string bytes = encode_snapshot(snap, fingerprint);
      write_file(path + ".tmp", bytes);
      std::filesystem::rename(path + ".tmp", path);
      send_json(res, 200, {{"id_slot", id}, {"filename", name}, {"n_saved", snap.tokens.size()},
                           {"n_written", bytes.size()}, {"timings", {{"save_ms", ms()}}}});
      return;
    }
    if (!std::filesystem::exists(path)) throw ApiError(404, "no saved slot named '" + name + "'", "invalid_request_error", "filename");
    const std::string bytes = read_file(path);
    Snapshot snap = decode_snapshot(bytes, fingerprint, engine.model(), name);
    const size_t n = snap.tokens.size();
    scheduler.restore_slot(id, std::move(snap));
    send_json(res, 200, {{"id_slot", id}, {"filename", name}, {"n_restored", n}, {"n_read", bytes.size()},
                         {"timings", {{"restore_ms", ms()}}}});
  } catch (const Busy& e) {
    throw ApiError(409, e.what(), "invalid_request_error", "", "slot_busy");
  } catch (const Error& e) {
    throw ApiError(400, e.what());
  }
}

}  // namespace dsv4
