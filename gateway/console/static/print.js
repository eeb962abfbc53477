// The residency report's print button; without JavaScript, the browser's own Print does the same.
document.documentElement.classList.add("js");
const button = document.getElementById("print");
if (button) button.addEventListener("click", () => window.print());
