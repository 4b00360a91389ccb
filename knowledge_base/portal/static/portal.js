// Open the hub's chat widget instead of following the "Chat with us" link,
// when /widget.js has loaded. Without JavaScript the link goes to the demo page.
document.addEventListener("click", function (event) {
  var target = event.target instanceof Element ? event.target.closest("[data-chat-open]") : null;
  if (!target || !(window.ServicehubWidget && window.ServicehubWidget.open)) {
    return;
  }
  event.preventDefault();
  window.ServicehubWidget.open();
});
